#!/usr/bin/env python3
"""Benchmark cce4fs over s3:// against s3fs and rclone mount (plain and crypt) on one server.

In one run, on this machine: starts the moto S3 test server (scripts/s3_test_server.py, signatures
enforced) on 127.0.0.1, makes the same plaintext once (a big file and N small files), uploads it
for each contender (plain objects for s3fs and rclone, an rclone crypt remote, a cce4 dataset in
parts and one as a single object), then for each contender mounts it fresh, drops the page cache,
and measures a sequential read of the big file and a walk that reads every small file. Prints
medians (min-max) and cce4fs's ratios; writes JSON. Needs root and /dev/fuse.

    .venv/bin/python scripts/bench/s3bench.py [--quick] [--runs N] [--work DIR]

moto is the bottleneck of several figures (it copies a whole object for each ranged GET): see
docs/performance.md, "s3:// against s3fs and rclone".
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MiB = 1 << 20
GiB = 1 << 30
BUCKET = "cce4-bench"
PROFILES = {
    "full": dict(big=1 * GiB, n_small=10_000, small_min=1024, small_max=16 * 1024, runs=3),
    "quick": dict(big=64 * MiB, n_small=1_000, small_min=1024, small_max=16 * 1024, runs=1),
}
CONTENDERS = ["cce4fs", "cce4fs-single", "s3fs", "rclone", "rclone-crypt"]


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def sh(cmd, env=None, check=True, **kw):
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, **kw)
    if check and r.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed ({r.returncode}): {r.stderr.strip()[:2000]}")
    return r


def drop_caches():
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


def is_mounted(path: Path) -> bool:
    return any(line.split()[1] == str(path) for line in Path("/proc/mounts").read_text().splitlines())


def wait_mounted(path: Path, timeout=30):
    end = time.time() + timeout
    while time.time() < end:
        if is_mounted(path):
            return
        time.sleep(0.1)
    raise RuntimeError(f"{path} did not mount")


def unmount(path: Path):
    if is_mounted(path):
        if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)
    end = time.time() + 10
    while is_mounted(path) and time.time() < end:
        time.sleep(0.1)


class Bench:
    def __init__(self, args):
        self.args = args
        self.p = dict(PROFILES["quick" if args.quick else "full"])
        if "walk" not in args.only:
            self.p["n_small"] = 0  # no small files to make or upload
        self.runs = args.runs or self.p["runs"]
        self.work = Path(args.work)
        self.bin = Path(args.bin_dir)
        self.mounts: list[Path] = []

    # ---- server and data ------------------------------------------------------------------

    def start_server(self):
        # --no-auth: moto refuses s3fs 1.90's signed ListObjects requests (SignatureDoesNotMatch
        # on every listing), so the benchmark server does not check signatures; every contender
        # still signs its requests. The tests run with checks on.
        self.server = subprocess.Popen([sys.executable, str(REPO / "scripts/s3_test_server.py"), "--no-auth", BUCKET],
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        info = json.loads(self.server.stdout.readline())
        self.endpoint, self.ak, self.sk, self.region = info["endpoint"], info["access_key"], info["secret_key"], info["region"]
        self.env = dict(os.environ, AWS_ENDPOINT_URL=self.endpoint, AWS_ACCESS_KEY_ID=self.ak,
                        AWS_SECRET_ACCESS_KEY=self.sk, AWS_REGION=self.region)
        # rclone 1.60's AWS SDK refuses AWS_CA_BUNDLE with its own HTTP transport; the
        # server is plain http on loopback anyway.
        for v in ("AWS_PROFILE", "AWS_CA_BUNDLE", "AWS_SESSION_TOKEN"):
            self.env.pop(v, None)
        obscured = sh(["rclone", "obscure", "cce4-bench-password"]).stdout.strip()
        self.env.update({
            "RCLONE_CONFIG_S3_TYPE": "s3", "RCLONE_CONFIG_S3_PROVIDER": "Other",
            "RCLONE_CONFIG_S3_ENDPOINT": self.endpoint, "RCLONE_CONFIG_S3_ACCESS_KEY_ID": self.ak,
            "RCLONE_CONFIG_S3_SECRET_ACCESS_KEY": self.sk, "RCLONE_CONFIG_S3_REGION": self.region,
            "RCLONE_CONFIG_S3_FORCE_PATH_STYLE": "true",
            "RCLONE_CONFIG_CRYPT_TYPE": "crypt", "RCLONE_CONFIG_CRYPT_REMOTE": f"s3:{BUCKET}/crypt",
            "RCLONE_CONFIG_CRYPT_PASSWORD": obscured,
        })
        self.passwd = self.work / "s3fs.passwd"
        self.passwd.write_text(f"{self.ak}:{self.sk}\n")
        self.passwd.chmod(0o600)
        self.creds = self.work / "credentials"
        self.creds.write_text(f"[default]\naws_access_key_id = {self.ak}\naws_secret_access_key = {self.sk}\n")
        log(f"server: moto at {self.endpoint}")

    def make_data(self):
        src = self.work / "src"
        if src.exists():
            shutil.rmtree(src)
        (src / "big").mkdir(parents=True)
        rng = random.Random(20261126)
        with open(src / "big/big.bin", "wb") as f:
            left = self.p["big"]
            while left:
                n = min(left, 8 * MiB)
                f.write(os.urandom(n))
                left -= n
        for i in range(self.p["n_small"]):
            d = src / "small" / f"d{i % 100:02d}"
            d.mkdir(parents=True, exist_ok=True)
            (d / f"f{i:05d}.bin").write_bytes(os.urandom(rng.randint(self.p["small_min"], self.p["small_max"])))
        self.src = src

    def upload(self):
        import boto3
        from boto3.s3.transfer import TransferConfig
        s3 = boto3.client("s3", endpoint_url=self.endpoint, region_name=self.region,
                          aws_access_key_id=self.ak, aws_secret_access_key=self.sk)
        t = time.time()
        s3.upload_file(str(self.src / "big/big.bin"), BUCKET, "plain/big/big.bin",
                       Config=TransferConfig(multipart_chunksize=16 * MiB, max_concurrency=4))
        files = sorted((self.src / "small").rglob("*.bin"))
        with ThreadPoolExecutor(8) as ex:
            list(ex.map(lambda p: s3.upload_file(str(p), BUCKET, "plain/small/" + str(p.relative_to(self.src / "small"))), files))
        log(f"upload plain: {time.time() - t:.0f} s")
        t = time.time()
        sh(["rclone", "copy", str(self.src), "crypt:", "--transfers", "8", "--s3-upload-cutoff", "16M", "--s3-chunk-size", "16M"], env=self.env)
        log(f"upload rclone crypt: {time.time() - t:.0f} s")
        key = self.work / "k"
        if not key.exists():
            sh([str(self.bin / "cce4"), "key", "generate", "--insecure-key-file", str(key)])
        self.key = key
        t = time.time()
        self.roots = {}
        layouts = [("parts", ["--part-size", str(8 * MiB)]), ("single", [])]
        wanted = {"cce4fs-single": "single", "cce4fs": "parts"}
        for name, extra in [l for l in layouts if l[0] in {wanted.get(c) for c in self.args.contenders}]:
            self.roots[name] = sh([str(self.bin / "cce4"), "dataset", "pack", str(self.src), "--store", f"s3://{BUCKET}/cce4-{name}",
                                   "--dataset", "bench", "--insecure-key-file", str(key), "-q"] + extra, env=self.env).stdout.strip()
        log(f"pack cce4 (parts and single): {time.time() - t:.0f} s")

    # ---- contenders --------------------------------------------------------------------------

    def mount(self, who: str) -> Path:
        mnt = self.work / f"mnt-{who}"
        unmount(mnt)
        mnt.mkdir(exist_ok=True)
        if who.startswith("cce4fs"):
            layout = "single" if who == "cce4fs-single" else "parts"
            opts = f"dataset=bench,root={self.roots[layout]},insecure_key_file={self.key},s3_endpoint={self.endpoint},s3_credentials_file={self.creds}"
            if self.args.cce4fs_opts:
                opts += "," + self.args.cce4fs_opts
            sh([str(self.bin / "cce4fs"), f"s3://{BUCKET}/cce4-{layout}", str(mnt), "-o", opts])
        elif who == "s3fs":
            sh(["s3fs", f"{BUCKET}:/plain", str(mnt), "-o",
                f"url={self.endpoint},use_path_request_style,passwd_file={self.passwd},ro,endpoint={self.region}"])
        elif who == "rclone":
            sh(["rclone", "mount", f"s3:{BUCKET}/plain", str(mnt), "--read-only", "--daemon"], env=self.env)
        elif who == "rclone-crypt":
            sh(["rclone", "mount", "crypt:", str(mnt), "--read-only", "--daemon"], env=self.env)
        wait_mounted(mnt)
        self.mounts.append(mnt)
        return mnt

    # ---- workloads ---------------------------------------------------------------------------

    def seqread(self, mnt: Path) -> float:
        drop_caches()
        t = time.time()
        n = 0
        with open(mnt / "big/big.bin", "rb", buffering=0) as f:
            while True:
                b = f.read(1 * MiB)
                if not b:
                    break
                n += len(b)
        dt = time.time() - t
        assert n == self.p["big"], f"read {n} bytes"
        return n / MiB / dt

    def walk(self, mnt: Path) -> float:
        drop_caches()
        t = time.time()
        count = 0
        for root, _dirs, files in os.walk(mnt / "small"):
            for name in files:
                with open(os.path.join(root, name), "rb") as f:
                    while f.read(1 * MiB):
                        pass
                count += 1
        dt = time.time() - t
        assert count == self.p["n_small"], f"walked {count} files"
        return count / dt

    def run(self):
        self.work.mkdir(parents=True, exist_ok=True)
        self.start_server()
        try:
            self.make_data()
            self.upload()
            results = {}
            # Runs interleave the contenders (the order rotates each run), so a slow spell of
            # this shared machine does not land on one contender's runs only.
            order = list(self.args.contenders)
            for i in range(self.runs):
                for who in order[i % len(order):] + order[:i % len(order)]:
                    for wl in self.args.only:
                        if who == "cce4fs-single" and wl == "walk":
                            continue  # same small-file layout as cce4fs
                        mnt = self.mount(who)  # a fresh mount per run: nothing cached
                        try:
                            v = getattr(self, wl)(mnt)
                        finally:
                            unmount(mnt)
                        results.setdefault(who, {}).setdefault(wl, []).append(v)
                        log(f"{who:14s} {wl:8s} run {i + 1}: {v:.1f}")
            return results
        finally:
            for m in self.mounts:
                unmount(m)
            self.server.stdin.close()
            self.server.wait(timeout=30)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="64 MiB and 1,000 small files, 1 run")
    ap.add_argument("--runs", type=int)
    ap.add_argument("--work", default="/tmp/cce4-s3bench")
    ap.add_argument("--bin-dir", default=str(REPO / ".build/release"))
    ap.add_argument("--contenders", help="comma-separated, from " + ", ".join(CONTENDERS) + " (default: all but "
                    "cce4fs-single in the full profile: moto needs minutes per run to serve a 1 GiB object in 1 MiB ranges)")
    ap.add_argument("--only", default="seqread,walk",
                    help="workloads: seqread, walk (default: both; without walk no small files are made or uploaded)")
    ap.add_argument("--json")
    ap.add_argument("--cce4fs-opts", help="extra -o options for cce4fs, e.g. prefetch=0")
    args = ap.parse_args()
    args.contenders = (args.contenders or ",".join(c for c in CONTENDERS if args.quick or c != "cce4fs-single")).split(",")
    if any(c not in CONTENDERS for c in args.contenders):
        sys.exit(f"s3bench: unknown contender in {','.join(args.contenders)}; choose from {', '.join(CONTENDERS)}")
    args.only = args.only.split(",")
    if not args.only or any(w not in ("seqread", "walk") for w in args.only):
        sys.exit("s3bench: --only takes seqread, walk or both")
    if os.geteuid() != 0:
        sys.exit("s3bench: run as root (drop_caches, mounts)")
    b = Bench(args)
    res = b.run()
    med = {w: {k: statistics.median(v) for k, v in d.items()} for w, d in res.items()}
    print(f"\n{'contender':14s} {'seq read MiB/s':>24s} {'walk files/s':>24s}")
    for who, d in res.items():
        cells = []
        for wl in ("seqread", "walk"):
            v = d.get(wl)
            cells.append(f"{statistics.median(v):9.1f} ({min(v):.0f}-{max(v):.0f})" if v else "-")
        print(f"{who:14s} {cells[0]:>24s} {cells[1]:>24s}")
    print()
    for other in ("s3fs", "rclone", "rclone-crypt"):
        if other in med and "cce4fs" in med:
            for wl in args.only:
                print(f"cce4fs / {other:12s} {wl:8s} {med['cce4fs'][wl] / med[other][wl]:.2f}x")
            if "cce4fs-single" in med and "seqread" in args.only:
                print(f"cce4fs-single / {other:12s} seqread  {med['cce4fs-single']['seqread'] / med[other]['seqread']:.2f}x")
    out = Path(args.json or (Path(args.work) / "s3bench-results.json"))
    out.write_text(json.dumps({"profile": "quick" if args.quick else "full", "runs": b.runs, "results": res,
                               "load": os.getloadavg()}, indent=1))
    log(f"results: {out}")


if __name__ == "__main__":
    main()
