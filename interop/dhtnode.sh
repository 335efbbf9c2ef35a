#!/usr/bin/env bash
# Runs the dhtnode that install.sh unpacked into interop/dhtnode/, with its own libraries.
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$HERE/dhtnode"
export LD_LIBRARY_PATH="$ROOT/usr/lib/x86_64-linux-gnu:$ROOT/usr/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
exec "$ROOT/usr/bin/dhtnode" "$@"
