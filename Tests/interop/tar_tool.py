#!/usr/bin/env python3
"""Independent tar implementation for the Dataset tests: Python's tarfile (stdlib).

  tar_tool.py make SRC_DIR OUT.tar FORMAT    FORMAT: ustar | pax | gnu; members named ./...
  tar_tool.py list ARCHIVE.tar               JSON on stdout: one object per member with
                                             name, type, size, mode, mtime, linkname, sha256
"""
import hashlib
import json
import sys
import tarfile

FORMATS = {"ustar": tarfile.USTAR_FORMAT, "pax": tarfile.PAX_FORMAT, "gnu": tarfile.GNU_FORMAT}


def main() -> None:
    cmd = sys.argv[1]
    if cmd == "make":
        src, out, fmt = sys.argv[2], sys.argv[3], sys.argv[4]
        with tarfile.open(out, "w", format=FORMATS[fmt], encoding="utf-8", errors="surrogateescape") as t:
            t.add(src, arcname=".")
    elif cmd == "list":
        members = []
        with tarfile.open(sys.argv[2], "r:", encoding="utf-8", errors="surrogateescape") as t:
            for m in t:
                entry = {
                    "name": m.name,
                    "type": "file" if m.isreg() else "dir" if m.isdir() else "symlink" if m.issym() else "other",
                    "size": m.size,
                    "mode": m.mode,
                    "mtime": str(m.mtime),
                    "linkname": m.linkname,
                }
                if m.isreg():
                    entry["sha256"] = hashlib.sha256(t.extractfile(m).read()).hexdigest()
                members.append(entry)
        json.dump(members, sys.stdout)
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
