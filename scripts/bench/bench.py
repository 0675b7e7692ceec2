#!/usr/bin/env python3
"""Benchmark cce4fs against gocryptfs, the libfuse passthrough_ll example and the plain directory.

In one run, on this machine: creates the same plaintext data once, prepares every contender over
it (plain directory, passthrough_ll, gocryptfs, cce4fs over a file:// store), runs the workloads
(fio where it fits, small Python drivers elsewhere) several times, and prints one table with each
figure's median (min-max) and its ratio to gocryptfs and to the plain directory; the same figures
go to a JSON file. Progress goes to stderr. See scripts/bench/README.md.

Needs root (drop_caches, mounts) and /dev/fuse. Run it as `make bench` (BENCH_ARGS=... for options).
Everything it mounts is unmounted on exit, including on errors and Ctrl-C.
"""

from __future__ import annotations

import argparse
import atexit
import datetime as _dt
import hashlib
import json
import os
import platform
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PASSTHROUGH_SRC = Path("/usr/share/doc/libfuse3-dev/examples/passthrough_ll.c")
MiB = 1 << 20
GiB = 1 << 30
SEED = 20240401
DATASET_ID = "bench"

# --------------------------------------------------------------------------------------------
# Sizes: the full profile is what the issue asks for; --quick is a smoke test.

PROFILES = {
    "full": dict(big_size=1 * GiB, n_small=10_000, small_min=4 * 1024, small_max=64 * 1024,
                 parquet_rows=2_800_000, fio_runtime=8, runs=5),
    "quick": dict(big_size=64 * MiB, n_small=1_000, small_min=4 * 1024, small_max=64 * 1024,
                  parquet_rows=150_000, fio_runtime=2, runs=1),
}
PARQUET_FLOAT_COLS = 8            # bm_00..bm_07 float64, plus id int64, age int16, sex, site strings
PARQUET_READ_COLS = ["age", "bm_03"]
PARQUET_ROW_GROUP = 262_144

CONTENDERS = ["plain", "passthrough_ll", "gocryptfs", "cce4fs", "cce4fs-uring"]
# cce4fs's metadata profile: FUSE over io_uring with ring workers that poll 50 µs for the next
# request (docs/semantics.md, "The request transport"). Needs Linux 6.14+; the harness turns
# the fuse module's enable_uring on for the run and puts it back at the end.
URING_OPTS = "uring=on,spin=50"
URING_PARAM = Path("/sys/module/fuse/parameters/enable_uring")
WORKLOADS = ["seqread", "randread", "smallfiles", "stat", "ls", "ttfb", "parquet", "memory"]
# Default runs per workload, capped by --runs when it is given (None: use --runs / the profile).
# (A full run with 5 runs everywhere takes about 9 minutes on 2 cores, so there are no caps today.)
RUNS_CAP: dict[str, int | None] = {w: None for w in WORKLOADS}

RAND_CASES = [(4, 1), (4, 4), (128, 1), (128, 4)]   # (block KiB, threads)


def metric_table(p: dict) -> dict:
    """id -> (workload, title, unit, better)."""
    big = human_size(p["big_size"])
    n = f"{p['n_small']:,}"
    m = {
        "seq_cold": ("seqread", f"sequential read {big}, cold", "MiB/s", "higher"),
        "seq_warm": ("seqread", f"sequential read {big}, warm (2nd read)", "MiB/s", "higher"),
    }
    for bs, nj in RAND_CASES:
        m[f"rand_{bs}k_{nj}t_iops"] = ("randread", f"random read {bs} KiB, {nj} thread{'s' * (nj > 1)}", "IOPS", "higher")
        m[f"rand_{bs}k_{nj}t_mibs"] = ("randread", f"random read {bs} KiB, {nj} thread{'s' * (nj > 1)}", "MiB/s", "higher")
    m.update({
        "small_files": ("smallfiles", f"open+read {n} small files, cold", "files/s", "higher"),
        "stat": ("stat", f"stat {n} files, cold", "files/s", "higher"),
        "ls": ("ls", f"ls -l of a {n}-entry directory, cold", "s", "lower"),
        "ttfb": ("ttfb", "time to first byte of a fresh mount", "ms", "lower"),
        "parquet": ("parquet", f"Parquet: read {len(PARQUET_READ_COLS)} of {PARQUET_FLOAT_COLS + 4} columns, cold", "s", "lower"),
        "rss": ("memory", f"peak RSS of the fs process, {big} cold+warm read", "MiB", "lower"),
    })
    return m


def human_size(n: int) -> str:
    for unit, f in (("GiB", GiB), ("MiB", MiB), ("KiB", 1024)):
        if n >= f and n % f == 0:
            return f"{n // f} {unit}"
    return f"{n} B"


# --------------------------------------------------------------------------------------------
# Logging and small helpers

T0 = time.monotonic()


def log(msg: str) -> None:
    s = int(time.monotonic() - T0)
    print(f"[{s // 60:3d}:{s % 60:02d}] {msg}", file=sys.stderr, flush=True)


class BenchError(Exception):
    pass


def run(cmd, *, check=True, timeout=600, capture=True, **kw) -> subprocess.CompletedProcess:
    cmd = [str(c) for c in cmd]
    try:
        r = subprocess.run(cmd, capture_output=capture, text=True, timeout=timeout, **kw)
    except subprocess.TimeoutExpired as e:
        raise BenchError(f"timed out after {timeout}s: {' '.join(cmd)}") from e
    if check and r.returncode != 0:
        err = (r.stderr or "").strip().splitlines()
        raise BenchError(f"exit {r.returncode}: {' '.join(cmd)}" + (f": {err[-1]}" if err else ""))
    return r


def drop_caches() -> None:
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def stats(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def _unescape_mountinfo(s: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), s)


def mountpoints() -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [_unescape_mountinfo(line.split()[4]) for line in f]


def is_mounted(path: Path) -> bool:
    return str(path) in mountpoints()


def proc_argv(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def proc_status_kib(pid: int, field: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def proc_cpu_s(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            rest = f.read().rsplit(")", 1)[1].split()
        return (int(rest[11]) + int(rest[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is not alive for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def find_daemon(mnt: Path, exe_names: tuple[str, ...]) -> int | None:
    """The filesystem process serving MNT: `pgrep -f MNT`, kept if argv has MNT as one argument."""
    r = run(["pgrep", "-f", "--", str(mnt)], check=False)
    cands = []
    for tok in r.stdout.split():
        pid = int(tok)
        if pid == os.getpid():
            continue
        argv = proc_argv(pid)
        if argv and str(mnt) in argv and os.path.basename(argv[0]) in exe_names:
            cands.append(pid)
    if not cands:
        return None
    # A launcher may still be waiting for its child: keep the leaf (no candidate is its child).
    parents = {proc_ppid(p) for p in cands}
    leaves = [p for p in cands if p not in parents]
    return max(leaves or cands)


def proc_ppid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


# --------------------------------------------------------------------------------------------
# Mount bookkeeping: everything mounted is unmounted at exit, and every daemon killed.

MOUNTED: set[Path] = set()
DAEMONS: dict[int, Path] = {}     # pid -> mountpoint (to recheck argv before any kill)


def umount(mnt: Path) -> None:
    if is_mounted(mnt):
        for _ in range(3):
            if run(["umount", mnt], check=False, timeout=60).returncode == 0:
                break
            time.sleep(0.3)
        else:
            log(f"umount {mnt} failed; lazy unmount")
            run(["umount", "-l", mnt], check=False, timeout=60)
    MOUNTED.discard(mnt)


def reap_daemon(pid: int, wait_s: float = 5.0) -> None:
    mnt = DAEMONS.pop(pid, None)
    deadline = time.monotonic() + wait_s
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if pid_alive(pid) and mnt is not None and str(mnt) in proc_argv(pid):
        for sig, pause in ((signal.SIGTERM, 2.0), (signal.SIGKILL, 1.0)):
            log(f"daemon {pid} still alive after unmount: {sig.name}")
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                break
            end = time.monotonic() + pause
            while pid_alive(pid) and time.monotonic() < end:
                time.sleep(0.05)
            if not pid_alive(pid):
                break


def cleanup_all() -> None:
    for mnt in sorted(MOUNTED):
        try:
            umount(mnt)
        except Exception as e:  # keep going: the rest must be unmounted too
            log(f"cleanup: {mnt}: {e}")
    for pid in list(DAEMONS):
        reap_daemon(pid, wait_s=2.0)


def cleanup_stale(work: Path) -> None:
    """Unmount leftovers of an earlier, killed run under WORK/mnt."""
    prefix = str(work / "mnt") + "/"
    for mp in mountpoints():
        if mp.startswith(prefix):
            log(f"unmounting a leftover mount {mp}")
            run(["umount", mp], check=False)
            if is_mounted(Path(mp)):
                run(["umount", "-l", mp], check=False)


# --------------------------------------------------------------------------------------------
# Data: created once per work dir and profile, reused while the manifest matches.

def data_spec(p: dict) -> dict:
    return {"format": 2, "seed": SEED, "big_size": p["big_size"], "n_small": p["n_small"],
            "small_min": p["small_min"], "small_max": p["small_max"], "parquet_rows": p["parquet_rows"],
            "parquet_row_group": PARQUET_ROW_GROUP}


def small_name(i: int) -> str:
    return f"f{i:05d}.dat"


def small_sizes(spec: dict) -> list[int]:
    rng = random.Random(spec["seed"])
    return [rng.randint(spec["small_min"], spec["small_max"]) for _ in range(spec["n_small"])]


def make_data(data_dir: Path, p: dict) -> tuple[Path, dict]:
    import numpy as np

    spec = data_spec(p)
    plain = data_dir / "plain"
    manifest_path = data_dir / "manifest.json"
    if manifest_path.exists():
        try:
            man = json.loads(manifest_path.read_text())
            if man.get("spec") == spec and (plain / "big.bin").stat().st_size == spec["big_size"]:
                log(f"plaintext data: reusing {plain} ({human_size(man['total_bytes']) if man['total_bytes'] % MiB == 0 else str(man['total_bytes'] // MiB) + ' MiB'})")
                return plain, man
        except (OSError, ValueError, KeyError):
            pass
    log(f"plaintext data: creating under {plain}")
    if data_dir.exists():
        shutil.rmtree(data_dir)
    (plain / "small").mkdir(parents=True)
    rng = np.random.default_rng(spec["seed"])

    chunk = 16 * MiB
    with open(plain / "big.bin", "wb") as f:
        left = spec["big_size"]
        while left:
            n = min(chunk, left)
            f.write(rng.bytes(n))
            left -= n
    log(f"  big.bin {human_size(spec['big_size'])}")

    sizes = small_sizes(spec)
    for i, size in enumerate(sizes):
        with open(plain / "small" / small_name(i), "wb") as f:
            f.write(rng.bytes(size))
    log(f"  small/: {len(sizes):,} files, {sum(sizes) // MiB} MiB")

    import pyarrow as pa
    import pyarrow.parquet as pq
    rows = spec["parquet_rows"]
    schema = pa.schema([("id", pa.int64()), ("age", pa.int16()), ("sex", pa.string()), ("site", pa.string())]
                       + [(f"bm_{k:02d}", pa.float64()) for k in range(PARQUET_FLOAT_COLS)])
    sites = np.array([f"site-{k:02d}" for k in range(24)], dtype=object)
    with pq.ParquetWriter(plain / "table.parquet", schema) as w:
        for start in range(0, rows, PARQUET_ROW_GROUP):
            n = min(PARQUET_ROW_GROUP, rows - start)
            cols = [pa.array(np.arange(start, start + n, dtype=np.int64)),
                    pa.array(rng.integers(18, 100, n, dtype=np.int16)),
                    pa.array(np.where(rng.random(n) < 0.5, "F", "M").astype(object)),
                    pa.array(sites[rng.integers(0, len(sites), n)])]
            cols += [pa.array(rng.normal(k, 1.0 + k, n)) for k in range(PARQUET_FLOAT_COLS)]
            w.write_table(pa.Table.from_arrays(cols, schema=schema), row_group_size=PARQUET_ROW_GROUP)
    psize = (plain / "table.parquet").stat().st_size
    log(f"  table.parquet {rows:,} rows, {psize // MiB} MiB")

    os.sync()
    man = {"spec": spec, "small_total": sum(sizes), "parquet_size": psize,
           "total_bytes": spec["big_size"] + sum(sizes) + psize,
           "checks": checksums(plain, spec)}
    manifest_path.write_text(json.dumps(man, indent=1))
    return plain, man


def checksums(root: Path, spec: dict) -> dict:
    """SHA-256 of a few samples: the first and last MiB of big.bin and three small files."""
    out = {}
    big = root / "big.bin"
    with open(big, "rb") as f:
        out["big.bin:head"] = hashlib.sha256(f.read(MiB)).hexdigest()
        f.seek(max(0, spec["big_size"] - MiB - 12345))
        out["big.bin:tail"] = hashlib.sha256(f.read()).hexdigest()
    for i in (0, spec["n_small"] // 2, spec["n_small"] - 1):
        out[f"small/{small_name(i)}"] = hashlib.sha256((root / "small" / small_name(i)).read_bytes()).hexdigest()
    return out


# --------------------------------------------------------------------------------------------
# Contenders

class Contender:
    name = "?"
    fuse = True
    exe_names: tuple[str, ...] = ()

    def __init__(self, ctx: "Ctx"):
        self.ctx = ctx
        self.mnt = ctx.work / "mnt" / self.name
        self.pid: int | None = None
        self.info: dict = {}

    @property
    def root(self) -> Path:
        return self.mnt

    def prepare(self) -> None:
        pass

    def mount_cmd(self) -> list:
        raise NotImplementedError

    def mount(self) -> None:
        self.start_mount()
        self.after_mount()

    def start_mount(self) -> None:
        """Runs the mount command only (time to first byte times this, not the bookkeeping)."""
        self.mnt.mkdir(parents=True, exist_ok=True)
        if is_mounted(self.mnt):
            raise BenchError(f"{self.mnt} is already mounted")
        MOUNTED.add(self.mnt)        # registered first: a mount that races an interrupt is still cleaned up
        try:
            run(self.mount_cmd(), timeout=120, start_new_session=True, stdin=subprocess.DEVNULL)
        except BaseException:
            self.unmount()
            raise

    def after_mount(self) -> None:
        if not is_mounted(self.mnt):
            raise BenchError(f"{self.name}: the mount command returned but {self.mnt} is not mounted")
        self.pid = find_daemon(self.mnt, self.exe_names)
        if self.pid is not None:
            DAEMONS[self.pid] = self.mnt

    def unmount(self) -> None:
        umount(self.mnt)
        if self.pid is not None:
            reap_daemon(self.pid)
            self.pid = None

    def cold(self) -> None:
        """A fresh mount (the contender's own caches empty) and a dropped page cache."""
        if self.fuse:
            self.unmount()
            self.mount()
        drop_caches()

    def ensure_mounted(self) -> None:
        if self.fuse and (not is_mounted(self.mnt) or self.pid is None or not pid_alive(self.pid)):
            self.unmount()
            self.mount()

    def hwm_mib(self) -> float | None:
        if self.pid is None:
            return None
        kib = proc_status_kib(self.pid, "VmHWM")
        return None if kib is None else kib / 1024

    def cpu_s(self) -> float | None:
        return None if self.pid is None else proc_cpu_s(self.pid)


class Plain(Contender):
    name = "plain"
    fuse = False

    @property
    def root(self) -> Path:
        return self.ctx.plain

    def mount(self) -> None:
        pass

    def start_mount(self) -> None:
        pass

    def after_mount(self) -> None:
        pass

    def unmount(self) -> None:
        pass


class PassthroughLL(Contender):
    name = "passthrough_ll"
    exe_names = ("passthrough_ll",)

    def prepare(self) -> None:
        exe = self.ctx.bin / "passthrough_ll"
        if not PASSTHROUGH_SRC.exists():
            raise BenchError(f"{PASSTHROUGH_SRC} is missing: apt-get install -y libfuse3-dev")
        build = self.ctx.bin / "passthrough_ll-build"
        build.mkdir(parents=True, exist_ok=True)
        # The example includes passthrough_helpers.h from its own directory.
        for f in ("passthrough_ll.c", "passthrough_helpers.h"):
            shutil.copy2(PASSTHROUGH_SRC.parent / f, build / f)
        flags = run(["pkg-config", "fuse3", "--cflags", "--libs"]).stdout.split()
        run(["gcc", "-O2", "-Wall", build / "passthrough_ll.c", *flags, "-o", exe])
        self.exe = exe
        self.info["build"] = f"gcc -O2 -Wall passthrough_ll.c $(pkg-config fuse3 --cflags --libs); default options (cache=auto, timeout=1)"

    def mount_cmd(self) -> list:
        return [self.exe, "-o", f"source={self.ctx.plain}", self.mnt]


class Gocryptfs(Contender):
    name = "gocryptfs"
    exe_names = ("gocryptfs",)

    def prepare(self) -> None:
        base = self.ctx.work / "gocryptfs"
        if base.exists():
            shutil.rmtree(base)
        self.cipher = base / "cipher"
        self.cipher.mkdir(parents=True)
        self.passfile = base / "passfile"
        self.passfile.write_text(os.urandom(16).hex() + "\n")
        self.passfile.chmod(0o600)
        run(["gocryptfs", "-init", "-q", "-passfile", self.passfile, self.cipher])
        self.mount()
        t = time.monotonic()
        run(["cp", "-a", f"{self.ctx.plain}/.", f"{self.mnt}/"], timeout=3600)
        os.sync()
        self.info["copy_in_s"] = round(time.monotonic() - t, 2)
        self.unmount()
        self.info["ciphertext_bytes"] = dir_bytes(self.cipher)
        log(f"  gocryptfs: copied the data in ({self.info['copy_in_s']} s)")

    def mount_cmd(self) -> list:
        return ["gocryptfs", "-q", "-passfile", self.passfile, self.cipher, self.mnt]


class Cce4fs(Contender):
    name = "cce4fs"
    exe_names = ("cce4fs",)

    def prepare(self) -> None:
        base = self.ctx.work / "cce4"
        if base.exists():
            shutil.rmtree(base)
        base.mkdir(parents=True)
        self.key = base / "dataset.key"
        self.store = base / "store"
        cce4 = self.ctx.bin / "cce4"
        run([cce4, "key", "generate", "--insecure-key-file", self.key])
        t = time.monotonic()
        out = run([cce4, "dataset", "pack", self.ctx.plain, "--store", f"file://{self.store}", "--dataset", DATASET_ID,
                   "--insecure-key-file", self.key, "-q"], timeout=3600).stdout.strip()
        if not re.fullmatch(r"[0-9a-f]{64}", out):
            raise BenchError(f"cce4 dataset pack printed {out!r}, not a root hash")
        self.root_hash = out
        self.info["pack_s"] = round(time.monotonic() - t, 2)
        self.info["root"] = out
        self.info["ciphertext_bytes"] = dir_bytes(self.store)
        self.ctx.cce4fs_store = self
        log(f"  cce4fs: packed into {self.store} ({self.info['pack_s']} s), root {out[:16]}…")

    def mount_cmd(self) -> list:
        opts = f"dataset={DATASET_ID},root={self.root_hash},insecure_key_file={self.key}"
        if self.ctx.cce4fs_opts:
            opts += "," + self.ctx.cce4fs_opts
        return [self.ctx.bin / "cce4fs", f"file://{self.store}", self.mnt, "-o", opts + self.extra_opts]

    extra_opts = ""


class Cce4fsUring(Cce4fs):
    """The same store and binary as cce4fs, mounted with URING_OPTS."""
    name = "cce4fs-uring"
    extra_opts = "," + URING_OPTS

    def prepare(self) -> None:
        if not URING_PARAM.exists():
            raise BenchError(f"this kernel has no FUSE over io_uring ({URING_PARAM}): Linux 6.14+ is needed; "
                             "leave cce4fs-uring out with --contenders")
        old = URING_PARAM.read_text().strip()
        if old != "Y":
            try:
                URING_PARAM.write_text("1")
            except OSError as e:
                raise BenchError(f"cannot turn on FUSE over io_uring ({URING_PARAM}: {e})") from e
            atexit.register(lambda: URING_PARAM.write_text("0"))
            log(f"  cce4fs-uring: turned the fuse module's enable_uring on for this run (it was {old})")
        first = self.ctx.cce4fs_store
        if first is None:
            super().prepare()
            self.ctx.cce4fs_store = self
        else:
            self.key, self.store, self.root_hash = first.key, first.store, first.root_hash
            self.info.update({k: first.info[k] for k in ("pack_s", "root", "ciphertext_bytes")})
            log("  cce4fs-uring: the cce4fs store")


def dir_bytes(d: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(d):
        for f in files:
            total += os.lstat(os.path.join(dirpath, f)).st_size
    return total


CONTENDER_CLASSES = {c.name: c for c in (Plain, PassthroughLL, Gocryptfs, Cce4fs, Cce4fsUring)}


# --------------------------------------------------------------------------------------------
# Workload drivers

def fio(ctx: "Ctx", name: str, path: Path, extra: list[str], timeout: float) -> dict:
    out = ctx.work / "fio.json"
    if out.exists():
        out.unlink()
    run(["fio", f"--name={name}", f"--filename={path}", "--readonly", "--ioengine=psync", "--invalidate=0",
         "--output-format=json", f"--output={out}", *extra], timeout=timeout)
    j = json.loads(out.read_text())
    if j["jobs"][0].get("error"):
        raise BenchError(f"fio {name}: error {j['jobs'][0]['error']}")
    rd = j["jobs"][0]["read"]
    return {"bw_mibs": rd["bw_bytes"] / MiB, "iops": rd["iops"], "bytes": rd["io_bytes"]}


def worker(ctx: "Ctx", kind: str, args: dict, timeout: float = 900) -> dict:
    """Runs a measurement in a fresh Python process (a hung read cannot hang the driver)."""
    r = run([sys.executable, Path(__file__).resolve(), "__worker__", kind, json.dumps(args)], timeout=timeout)
    return json.loads(r.stdout.strip().splitlines()[-1])


def w_seqread(ctx, c: Contender) -> dict:
    p = ctx.p
    path = c.root / "big.bin"
    c.cold()
    cpu0 = c.cpu_s()
    timeout = 60 + p["big_size"] / MiB          # at least 1 MiB/s
    cold = fio(ctx, "seqcold", path, ["--rw=read", "--bs=1M"], timeout)
    cpu1 = c.cpu_s()
    warm = fio(ctx, "seqwarm", path, ["--rw=read", "--bs=1M"], timeout)
    for r in (cold, warm):
        if r["bytes"] != p["big_size"]:
            raise BenchError(f"fio read {r['bytes']} bytes of big.bin, expected {p['big_size']}")
    out = {"seq_cold": cold["bw_mibs"], "seq_warm": warm["bw_mibs"]}
    extra = {}
    if c.fuse:
        out["rss"] = c.hwm_mib()
        if cpu0 is not None and cpu1 is not None:
            extra["fs_cpu_s_per_gib_cold"] = round((cpu1 - cpu0) * GiB / p["big_size"], 3)
    return out, extra


def w_memory(ctx, c: Contender) -> dict:
    out, extra = w_seqread(ctx, c)
    return {"rss": out.get("rss")}, extra


def w_randread(ctx, c: Contender) -> dict:
    p = ctx.p
    out = {}
    for bs, nj in RAND_CASES:
        c.cold()
        # Each thread owns 1/nj of the file and fio's random map reads each block of it at most
        # once: every read is a page-cache miss, whatever the speed (a thread that covers its share
        # before the runtime stops early).
        share = p["big_size"] // nj
        r = fio(ctx, f"rand{bs}k{nj}", c.root / "big.bin",
                ["--rw=randread", f"--bs={bs}k", f"--numjobs={nj}", f"--size={share}",
                 f"--offset_increment={share}", f"--runtime={p['fio_runtime']}", "--group_reporting"],
                timeout=p["fio_runtime"] + 180)
        out[f"rand_{bs}k_{nj}t_iops"] = r["iops"]
        out[f"rand_{bs}k_{nj}t_mibs"] = r["bw_mibs"]
    return out, {}


def cpu_per_item(c: Contender, cpu0: float | None, n: int) -> dict:
    cpu1 = c.cpu_s()
    if cpu0 is None or cpu1 is None:
        return {}
    return {"fs_cpu_us_per_file": round((cpu1 - cpu0) * 1e6 / n, 1)}


def w_smallfiles(ctx, c: Contender) -> dict:
    c.cold()
    cpu0 = c.cpu_s()
    r = worker(ctx, "smallfiles", {"dir": str(c.root / "small"), "n": ctx.p["n_small"]})
    if r["bytes"] != ctx.manifest["small_total"]:
        raise BenchError(f"read {r['bytes']} bytes of small files, expected {ctx.manifest['small_total']}")
    extra = {"mibs": round(r["bytes"] / MiB / r["seconds"], 1), **cpu_per_item(c, cpu0, r["count"])}
    return {"small_files": r["count"] / r["seconds"]}, extra


def w_stat(ctx, c: Contender) -> dict:
    c.cold()
    cpu0 = c.cpu_s()
    r = worker(ctx, "stat", {"dir": str(c.root / "small"), "n": ctx.p["n_small"]})
    if r["size_sum"] != ctx.manifest["small_total"]:
        raise BenchError(f"stat sizes sum to {r['size_sum']}, expected {ctx.manifest['small_total']}")
    return {"stat": r["count"] / r["seconds"]}, cpu_per_item(c, cpu0, r["count"])


def w_ls(ctx, c: Contender) -> dict:
    c.cold()
    env = dict(os.environ, LC_ALL="C")
    t = time.perf_counter()
    r = run(["ls", "-l", "--color=never", c.root / "small"], env=env, timeout=600)
    dt = time.perf_counter() - t
    lines = r.stdout.count("\n")
    if lines != ctx.p["n_small"] + 1:
        raise BenchError(f"ls -l printed {lines} lines, expected {ctx.p['n_small'] + 1}")
    return {"ls": dt}, {}


def w_ttfb(ctx, c: Contender) -> dict:
    path = c.root / "big.bin"
    if c.fuse:
        c.unmount()
    drop_caches()
    t = time.perf_counter()
    c.start_mount()
    fd = os.open(path, os.O_RDONLY)
    try:
        b = os.read(fd, 1)
    finally:
        os.close(fd)
    dt = time.perf_counter() - t
    c.after_mount()                   # the checks and the daemon's pid, outside the timing
    if len(b) != 1:
        raise BenchError("read 0 bytes")
    return {"ttfb": dt * 1000}, {}


def w_parquet(ctx, c: Contender) -> dict:
    c.cold()
    r = worker(ctx, "parquet", {"path": str(c.root / "table.parquet"), "columns": PARQUET_READ_COLS})
    if r["rows"] != ctx.p["parquet_rows"]:
        raise BenchError(f"read {r['rows']} rows, expected {ctx.p['parquet_rows']}")
    return {"parquet": r["seconds"]}, {}


WORKLOAD_FNS = {"seqread": w_seqread, "randread": w_randread, "smallfiles": w_smallfiles, "stat": w_stat,
                "ls": w_ls, "ttfb": w_ttfb, "parquet": w_parquet, "memory": w_memory}


def worker_main(kind: str, args: dict) -> None:
    """`bench.py __worker__ KIND JSON`: one measurement, one JSON line on stdout."""
    if kind in ("smallfiles", "stat"):
        d, n = args["dir"], args["n"]
        names = [os.path.join(d, small_name(i)) for i in range(n)]
        random.Random(SEED).shuffle(names)          # a fixed order that is not the directory order
        if kind == "smallfiles":
            buf = bytearray(1 << 20)
            mv = memoryview(buf)
            total = 0
            t = time.perf_counter()
            for p in names:
                with open(p, "rb", buffering=0) as f:
                    while k := f.readinto(mv):
                        total += k
            dt = time.perf_counter() - t
            res = {"seconds": dt, "count": n, "bytes": total}
        else:
            size_sum = 0
            t = time.perf_counter()
            for p in names:
                size_sum += os.stat(p).st_size
            dt = time.perf_counter() - t
            res = {"seconds": dt, "count": n, "size_sum": size_sum}
    elif kind == "parquet":
        import pyarrow.parquet as pq
        t = time.perf_counter()
        tbl = pq.read_table(args["path"], columns=args["columns"])
        dt = time.perf_counter() - t
        res = {"seconds": dt, "rows": tbl.num_rows}
    else:
        raise SystemExit(f"unknown worker {kind}")
    print(json.dumps(res))


# --------------------------------------------------------------------------------------------
# The run

class Ctx:
    def __init__(self, args):
        self.args = args
        self.work: Path = Path(args.work).resolve()
        self.bin = self.work / "bin"
        self.profile = "quick" if args.quick else "full"
        self.p = dict(PROFILES[self.profile])
        if args.fio_runtime:
            self.p["fio_runtime"] = args.fio_runtime
        self.cce4fs_opts = args.cce4fs_opts
        self.cce4fs_store: "Cce4fs | None" = None   # the first cce4fs contender prepared: its store is shared
        self.plain: Path = Path()
        self.manifest: dict = {}


def check_environment() -> None:
    if os.geteuid() != 0:
        raise BenchError("run as root: the benchmark drops the page cache and mounts filesystems")
    if not os.path.exists("/dev/fuse"):
        raise BenchError("/dev/fuse is missing: load the fuse module (modprobe fuse)")
    need = {"fio": "fio", "gocryptfs": "gocryptfs", "gcc": "gcc", "pkg-config": "pkg-config",
            "fusermount3": "fuse3", "pgrep": "procps"}
    missing = sorted({pkg for exe, pkg in need.items() if shutil.which(exe) is None})
    if not PASSTHROUGH_SRC.exists():
        missing.append("libfuse3-dev")
    if missing:
        log(f"installing Debian packages: {' '.join(missing)}")
        run(["apt-get", "update", "-qq"], timeout=900)
        run(["apt-get", "install", "-y", "-qq", *missing], timeout=1800,
            env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))


def copy_binaries(ctx: Ctx) -> dict:
    """Copies cce4 and cce4fs into WORK/bin: a rebuild during the run cannot swap them."""
    src = Path(ctx.args.bin_dir).resolve() if ctx.args.bin_dir else REPO / ".build" / "release"
    info = {}
    for name in ("cce4", "cce4fs"):
        f = src / name
        if not f.exists():
            raise BenchError(f"{f} is missing: run 'make build' (swift build -c release) first")
        dst = ctx.bin / name
        tmp = dst.with_suffix(".tmp")
        shutil.copy2(f, tmp)
        os.replace(tmp, dst)
        info[name] = {"source": str(f), "sha256": hashlib.sha256(dst.read_bytes()).hexdigest()[:16],
                      "mtime": _dt.datetime.fromtimestamp(f.stat().st_mtime).isoformat(timespec="seconds")}
    return info


def versions(ctx: Ctx) -> dict:
    def out(cmd):
        try:
            r = run(cmd, check=False, timeout=30)
            return (r.stdout or r.stderr).strip().splitlines()[0] if (r.stdout or r.stderr).strip() else ""
        except Exception:
            return ""
    git = out(["git", "-C", REPO, "rev-parse", "--short", "HEAD"])
    dirty = out(["git", "-C", REPO, "status", "--porcelain", "--", "Sources", "Package.swift"])
    return {"kernel": platform.release(), "fio": out(["fio", "--version"]), "gocryptfs": out(["gocryptfs", "-version"]),
            "libfuse": out(["pkg-config", "--modversion", "fuse3"]), "cce4fs": out([ctx.bin / "cce4fs", "--version"]),
            "git": git + ("+dirty" if dirty else ""), "python": platform.python_version()}


def machine() -> dict:
    cpu = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem = int(next(l for l in open("/proc/meminfo") if l.startswith("MemTotal")).split()[1]) // 1024
    except Exception:
        mem = None
    return {"cpus": os.cpu_count(), "cpu": cpu, "mem_mib": mem, "hostname": platform.node()}


def runs_for(ctx: Ctx, wl: str) -> int:
    if ctx.args.runs is not None:
        return ctx.args.runs
    cap = RUNS_CAP.get(wl)
    base = ctx.p["runs"]
    return min(base, cap) if cap else base


def verify_contender(ctx: Ctx, c: Contender) -> None:
    c.ensure_mounted()
    got = checksums(c.root, ctx.manifest["spec"])
    bad = [k for k, v in ctx.manifest["checks"].items() if got.get(k) != v]
    if bad:
        raise BenchError(f"{c.name} returns wrong bytes for {', '.join(bad)}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="bench.py", formatter_class=argparse.RawDescriptionHelpFormatter,
        description=__doc__.split("\n\n")[0] + "\n\n" + "\n\n".join(__doc__.split("\n\n")[1:]),
        epilog="workloads: " + ", ".join(WORKLOADS) + "\ncontenders: " + ", ".join(CONTENDERS))
    ap.add_argument("--runs", type=int, help="runs per figure (default: 5; --quick: 1)")
    ap.add_argument("--work", default="/tmp/cce4-bench", help="work directory (default: %(default)s)")
    ap.add_argument("--json", help="machine-readable results (default: WORK/bench-results.json)")
    ap.add_argument("--only", help="comma-separated workloads to run (default: all)")
    ap.add_argument("--contenders", help="comma-separated contenders (default: all)")
    ap.add_argument("--quick", action="store_true", help="small sizes, 1 run: a smoke test")
    ap.add_argument("--fio-runtime", type=int, help="seconds per fio random-read case (default: 8; --quick: 2)")
    ap.add_argument("--bin-dir", help="where cce4 and cce4fs are (default: REPO/.build/release)")
    ap.add_argument("--cce4fs-opts", default="", help="extra -o options for cce4fs, e.g. threads=4")
    args = ap.parse_args(argv)

    only = args.only.split(",") if args.only else list(WORKLOADS)
    for w in only:
        if w not in WORKLOADS:
            ap.error(f"unknown workload {w!r}; choose from {', '.join(WORKLOADS)}")
    contenders = args.contenders.split(",") if args.contenders else list(CONTENDERS)
    for c in contenders:
        if c not in CONTENDERS:
            ap.error(f"unknown contender {c!r}; choose from {', '.join(CONTENDERS)}")
    contenders = [c for c in CONTENDERS if c in contenders]
    if args.runs is not None and args.runs < 1:
        ap.error("--runs must be at least 1")

    ctx = Ctx(args)
    json_path = Path(args.json).resolve() if args.json else ctx.work / "bench-results.json"
    metrics = metric_table(ctx.p)
    selected_metrics = [m for m, (w, *_r) in metrics.items() if w in only]
    results: dict[str, dict[str, dict]] = {m: {c: {"runs": [], "errors": []} for c in contenders} for m in selected_metrics}
    extras: dict[str, dict[str, list]] = {}
    report = {"schema": "cce4-bench/1", "started": _dt.datetime.now().isoformat(timespec="seconds"),
              "complete": False, "profile": ctx.profile, "sizes": ctx.p, "workloads": only,
              "contenders": {}, "errors": []}

    # Signals: SIGTERM and SIGHUP end the run like Ctrl-C does, through the finally below.
    def _stop(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGHUP, _stop)

    objs: dict[str, Contender] = {}
    rc = 1
    try:
        check_environment()
        ctx.work.mkdir(parents=True, exist_ok=True)
        ctx.bin.mkdir(exist_ok=True)
        cleanup_stale(ctx.work)
        report["binaries"] = copy_binaries(ctx)
        report["versions"] = versions(ctx)
        report["machine"] = machine()
        report["loadavg_start"] = os.getloadavg()
        log(f"work dir {ctx.work}, profile {ctx.profile}, contenders {', '.join(contenders)}, workloads {', '.join(only)}")

        ctx.plain, ctx.manifest = make_data(ctx.work / "data" / ctx.profile, ctx.p)
        report["data"] = {k: ctx.manifest[k] for k in ("spec", "small_total", "parquet_size", "total_bytes")}

        for name in contenders:
            c = CONTENDER_CLASSES[name](ctx)
            log(f"preparing {name}")
            try:
                c.prepare()
                verify_contender(ctx, c)
                objs[name] = c
            except BenchError as e:
                log(f"  {name}: {e}; left out")
                report["errors"].append({"contender": name, "stage": "prepare", "error": str(e)})
                for m in results:
                    results[m][name]["errors"].append(f"prepare: {e}")
            report["contenders"][name] = c.info

        for wl in only:
            if wl == "memory" and "seqread" in only:
                continue              # seqread already records the peak RSS of each run
            n = runs_for(ctx, wl)
            fn = WORKLOAD_FNS[wl]
            for r in range(n):
                order = list(objs)
                k = r % max(1, len(order))
                for name in order[k:] + order[:k]:       # rotate: no contender always goes first
                    c = objs[name]
                    try:
                        vals, extra = fn(ctx, c)
                    except (BenchError, OSError, ValueError, KeyError) as e:
                        e = f"{type(e).__name__}: {e}" if not isinstance(e, BenchError) else str(e)
                        log(f"{wl} run {r + 1}/{n} {name}: ERROR {e}")
                        report["errors"].append({"workload": wl, "run": r + 1, "contender": name, "error": str(e)})
                        for m in results:
                            if metrics[m][0] == wl or (wl == "seqread" and m == "rss"):
                                results[m][name]["errors"].append(str(e))
                        continue
                    shown = []
                    for m, v in vals.items():
                        if m in results and v is not None:
                            results[m][name]["runs"].append(v)
                            if not m.endswith("_mibs") or m.startswith("rand_128"):
                                shown.append(f"{m} {v:,.1f}")
                    for kx, v in extra.items():
                        extras.setdefault(f"{wl}:{kx}", {}).setdefault(name, []).append(v)
                    log(f"{wl} run {r + 1}/{n} {name}: " + ", ".join(shown))
        rc = 0
    except KeyboardInterrupt as e:
        log(f"interrupted ({str(e) or 'Ctrl-C'}): unmounting")
        report["errors"].append({"stage": "run", "error": "interrupted"})
        rc = 130
    except BenchError as e:
        log(f"error: {e}")
        report["errors"].append({"stage": "setup", "error": str(e)})
        rc = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)     # a second Ctrl-C must not skip the unmounts
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        cleanup_all()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    # Summaries and ratios.
    out_metrics = []
    for m in selected_metrics:
        wl, title, unit, better = metrics[m]
        row = {"id": m, "workload": wl, "title": title, "unit": unit, "better": better, "results": {}}
        for c in contenders:
            res = results[m][c]
            entry = {"runs": res["runs"], "errors": res["errors"]}
            if res["runs"]:
                entry.update(stats(res["runs"]))
            row["results"][c] = entry
        for c, entry in row["results"].items():
            for ref in ("gocryptfs", "plain"):
                refe = row["results"].get(ref, {})
                ok = "median" in entry and refe.get("median")
                entry[f"ratio_{ref}"] = entry["median"] / refe["median"] if ok else None
        out_metrics.append(row)
    report["metrics"] = out_metrics
    report["extras"] = extras
    report["duration_s"] = round(time.monotonic() - T0, 1)
    report["loadavg_end"] = os.getloadavg()
    report["complete"] = rc == 0
    try:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(report, indent=1) + "\n")
        log(f"results written to {json_path}")
    except OSError as e:
        log(f"cannot write {json_path}: {e}")
    if any(e["runs"] for m in out_metrics for e in m["results"].values()):
        print_table(report, contenders)
    log(f"done in {report['duration_s'] / 60:.1f} min")
    return rc


def fmt(v: float | None, unit: str = "") -> str:
    if v is None:
        return "–"
    a = abs(v)
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}"


def print_table(report: dict, contenders: list[str]) -> None:
    v = report.get("versions", {})
    mach = report.get("machine", {})
    runs = sorted({len(e["runs"]) for m in report["metrics"] for e in m["results"].values() if e["runs"]})
    print()
    print(f"cce4fs benchmark, {report['started']}, profile {report['profile']}, "
          f"{mach.get('cpus', '?')} CPUs, {mach.get('mem_mib', '?')} MiB RAM, Linux {v.get('kernel', '?')}, "
          f"cce4 {v.get('git', '?')}, runs per figure {'/'.join(map(str, runs)) or '-'}, "
          f"load avg {report.get('loadavg_start', [0])[0]:.2f}->{report['loadavg_end'][0]:.2f}")
    print("median (min-max) of the runs; ×gocryptfs and ×plain = this median / that contender's median;")
    print("'better' says which direction wins (for 'lower', a ratio below 1 is better).")
    w = max(len(c) for c in contenders)
    for m in report["metrics"]:
        print()
        print(f"{m['title']}  [{m['unit']}, {m['better']} is better]")
        for c in contenders:
            e = m["results"][c]
            if not e["runs"]:
                why = "error: " + e["errors"][0][:70] if e["errors"] else "n/a"
                print(f"  {c:<{w}}  {why}")
                continue
            rng = f"({fmt(e['min'])}–{fmt(e['max'])})"
            errs = f"  [{len(e['errors'])} failed run(s)]" if e["errors"] else ""
            rg = f"{e['ratio_gocryptfs']:.2f}" if e.get("ratio_gocryptfs") is not None else "–"
            rp = f"{e['ratio_plain']:.2f}" if e.get("ratio_plain") is not None else "–"
            print(f"  {c:<{w}}  {fmt(e['median']):>9} {rng:<21} ×gocryptfs {rg:>6}  ×plain {rp:>6}{errs}")
    notes = {"seqread:fs_cpu_s_per_gib_cold": "CPU seconds of the fs process per GiB, cold sequential read",
             "smallfiles:mibs": "small files: MiB/s of file data",
             "smallfiles:fs_cpu_us_per_file": "small files: CPU microseconds of the fs process per file",
             "stat:fs_cpu_us_per_file": "stat: CPU microseconds of the fs process per file"}
    shown = [(k, t) for k, t in notes.items() if report.get("extras", {}).get(k)]
    if shown:
        print()
        print("Other figures (medians):")
        for k, t in shown:
            vals = report["extras"][k]
            print(f"  {t}: " + ", ".join(f"{c} {fmt(statistics.median(vals[c]))}" for c in contenders if vals.get(c)))
    print()


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "__worker__":
        worker_main(sys.argv[2], json.loads(sys.argv[3]))
        sys.exit(0)
    sys.exit(main())
