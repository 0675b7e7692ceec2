#!/usr/bin/env python3
"""Compiles contracts/*.vy with the pinned Vyper into contracts/build/<Name>.json.

Each artifact is {"contract", "vyper", "source_sha256", "abi", "bytecode"} (bytecode = the
deployment code, 0x-hex). The Swift EVM engine embeds nothing: `cce4 ledger deploy` and the
tests read these files. Run after editing a contract; commit the build.

  scripts/compile_contracts.py           # (re)write contracts/build/*.json
  scripts/compile_contracts.py --check   # exit 1 if a committed artifact differs from a fresh compile
"""
import argparse
import hashlib
import json
import pathlib
import sys

import vyper

PINNED = "0.4.3"  # requirements-dev.txt and ../shared/tools/evm-devnet/requirements.lock.txt
ROOT = pathlib.Path(__file__).resolve().parent.parent
SRC = ROOT / "contracts"
OUT = SRC / "build"


def artifact(path: pathlib.Path) -> str:
    source = path.read_text()
    out = vyper.compile_code(source, output_formats=["abi", "bytecode"])
    art = {"contract": path.stem, "vyper": vyper.__version__, "source_sha256": hashlib.sha256(source.encode()).hexdigest(),
           "abi": out["abi"], "bytecode": out["bytecode"]}
    return json.dumps(art, indent=1, sort_keys=True) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="compare with the committed build instead of writing it")
    a = ap.parse_args()
    if vyper.__version__.split("+")[0] != PINNED:
        print(f"vyper {vyper.__version__} is installed; the contracts are built with {PINNED} (make setup)", file=sys.stderr)
        return 2
    bad = []
    for src in sorted(SRC.glob("*.vy")):
        text = artifact(src)
        dst = OUT / (src.stem + ".json")
        if a.check:
            if not dst.exists() or dst.read_text() != text:
                bad.append(str(dst.relative_to(ROOT)))
        else:
            OUT.mkdir(exist_ok=True)
            dst.write_text(text)
            print(f"wrote {dst.relative_to(ROOT)}")
    if bad:
        print("out of date (run scripts/compile_contracts.py and commit): " + ", ".join(bad), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
