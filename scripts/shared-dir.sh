#!/bin/sh
# Prints the workplace's shared/ directory (third-party test data and tools, never copied into
# the repo): $CCE4_SHARED if set; else ../shared beside the repo; else ../shared beside the
# repo's origin, so a clone made elsewhere (git clone . /tmp/x) still finds it.
cd "$(dirname "$0")/.." || exit 1
if [ -n "$CCE4_SHARED" ]; then echo "$CCE4_SHARED"; exit 0; fi
if [ -d ../shared ]; then (cd ../shared && pwd); exit 0; fi
origin=$(git config --get remote.origin.url 2>/dev/null)
if [ -n "$origin" ] && [ -d "$origin/../shared" ]; then (cd "$origin/../shared" && pwd); exit 0; fi
echo "$(pwd)/../shared"
