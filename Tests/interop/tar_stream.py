#!/usr/bin/env python3
"""Streams a tar archive holding one file of SIZE_MIB MiB (pseudo-random, generated on the
fly: this process never holds more than 1 MiB of it) into a command's standard input, and
reports the command's peak memory.

  tar_stream.py SIZE_MIB CMD [ARGS...]
  -> JSON on stdout: {"status": exit status, "maxrss_kib": peak RSS of CMD, "stdout": ..., "stderr": ...}
"""
import json
import os
import random
import subprocess
import sys
import tarfile
import tempfile


def main() -> None:
    size = int(sys.argv[1]) << 20
    cmd = sys.argv[2:]
    info = tarfile.TarInfo("big.bin")
    info.size = size
    info.mtime = 1700000000
    info.mode = 0o644
    header = info.tobuf(format=tarfile.USTAR_FORMAT)
    block = random.Random(20251126).randbytes(1 << 20)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=out, stderr=err)
        try:
            p.stdin.write(header)
            left = size
            while left > 0:
                n = min(left, len(block))
                p.stdin.write(block[:n])
                left -= n
            p.stdin.write(b"\0" * ((512 - size % 512) % 512) + b"\0" * 1024)
            p.stdin.close()
        except BrokenPipeError:
            pass
        _, status, usage = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        json.dump({"status": p.returncode, "maxrss_kib": usage.ru_maxrss,
                   "stdout": out.read().decode(errors="replace"), "stderr": err.read().decode(errors="replace")}, sys.stdout)


if __name__ == "__main__":
    main()
