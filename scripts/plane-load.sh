#!/usr/bin/env bash
# Load run of the Privacy Plane: a fresh deployment (file:// store, embedded ledger, dev KEK) in a
# temp dir, `cce4 plane serve` on 127.0.0.1 port 0, then `cce4-bench plane-load` with CLIENTS
# concurrent sign-in + status clients for SECONDS. Prints the bench's JSON; results go in
# docs/performance.md §Privacy Plane. Usage: scripts/plane-load.sh [CLIENTS] [SECONDS] [CONFIG]
# (CONFIG: release or debug; release is what the figures are for).
set -euo pipefail
cd "$(dirname "$0")/.."
clients=${1:-200}; seconds=${2:-30}; config=${3:-release}
export PATH=/opt/swift/usr/bin:$PATH
swift build -c "$config" --product cce4 >/dev/null
swift build -c "$config" --product cce4-bench >/dev/null
bin=.build/$config
work=$(mktemp -d /tmp/cce4-plane-load.XXXXXX)
plane_pid=
cleanup() { [ -n "$plane_pid" ] && kill "$plane_pid" 2>/dev/null && wait "$plane_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
"$bin/cce4" ledger init --ledger "$work/ledger" >/dev/null
"$bin/cce4" key generate --insecure-key-file "$work/kek"
ulimit -n 65536 2>/dev/null || true
"$bin/cce4" plane serve --port 0 --store "file://$work/store" --ledger "$work/ledger" --insecure-dev-kek "$work/kek" \
    --log-level warning >"$work/out" 2>"$work/err" &
plane_pid=$!
for _ in $(seq 100); do grep -q listening "$work/out" 2>/dev/null && break; sleep 0.1; done
url=$(sed -E 's/^listening on ([^ ]+) .*/\1/' "$work/out")
echo "plane at $url ($(nproc) cores, shared with the load generator)" >&2
"$bin/cce4-bench" plane-load --url "$url" --clients "$clients" --seconds "$seconds"
