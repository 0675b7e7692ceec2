#!/usr/bin/env bash
# Installs what building, testing and the demo need, and only what is missing:
#   - Debian packages: OpenSSL and libcurl headers (libssl-dev, libcurl4-openssl-dev), libfuse3 (fuse3, libfuse3-dev: headers,
#     mount.fuse3, fusermount3), liburing-dev (FUSE over io_uring), pkg-config, mount/umount/unshare (util-linux),
#     Python venv support;
#   - the Swift toolchain on PATH (this machine kind ships it at /opt/swift);
#   - the repo's Python venv (.venv) with requirements-dev.txt.
# Safe to run again: it does nothing when everything is in place.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '==> %s\n' "$*"; }

need_apt=()
packages=(libssl-dev libcurl4-openssl-dev pkg-config util-linux fuse3 libfuse3-dev liburing-dev)
# `make bench` also needs the peers it measures against and fio (CCE4_SETUP_BENCH=1).
[ "${CCE4_SETUP_BENCH:-0}" = 1 ] && packages+=(fio gocryptfs gcc s3fs rclone)
for pkg in "${packages[@]}"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import venv, ensurepip' >/dev/null 2>&1; then need_apt+=(python3-venv); PYTHON=/usr/bin/python3; fi
if ((${#need_apt[@]})); then
    if [ "$(id -u)" != 0 ]; then
        echo "setup: missing Debian packages: ${need_apt[*]}; run 'sudo apt-get install -y ${need_apt[*]}' and try again" >&2
        exit 1
    fi
    say "installing Debian packages: ${need_apt[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if ! command -v swift >/dev/null 2>&1 && [ ! -x /opt/swift/usr/bin/swift ]; then
    echo "setup: no Swift toolchain found (expected 'swift' on PATH or /opt/swift/usr/bin/swift); install Swift 6.3" >&2
    exit 1
fi

stamp=.venv/.requirements-dev.txt
if [ ! -x .venv/bin/python ] || ! cmp -s requirements-dev.txt "$stamp"; then
    say "creating the Python venv (.venv) with requirements-dev.txt"
    [ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
    .venv/bin/python -m pip install -q --upgrade pip >/dev/null
    .venv/bin/python -m pip install -q -r requirements-dev.txt
    cp requirements-dev.txt "$stamp"
fi
# The chain ledger's tests run shared/tools/evm-devnet, whose start.sh makes its own venv on first
# use (pinned requirements.lock.txt); make it now so the first test run does not pay for it.
devnet="${CCE4_SHARED:-$(scripts/shared-dir.sh)}/tools/evm-devnet"
if [ -f "$devnet/requirements.lock.txt" ] && ! "${EVM_VENV:-/tmp/cce4-evm-venv}/bin/python" -c 'import eth_tester, vyper, eth_account' 2>/dev/null; then
    say "creating the evm-devnet venv (${EVM_VENV:-/tmp/cce4-evm-venv})"
    "$PYTHON" -m venv "${EVM_VENV:-/tmp/cce4-evm-venv}"
    "${EVM_VENV:-/tmp/cce4-evm-venv}/bin/pip" install -q -r "$devnet/requirements.lock.txt"
fi
say "setup complete"
