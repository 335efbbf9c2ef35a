#!/usr/bin/env bash
# Drives libtorrent and bittorrent-dht nodes against each other on 127.0.0.1 through the
# interop drivers. Installs what is missing first. Exits non-zero on failure.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
"$HERE/install.sh"
# selftest.py kills its drivers on exit (also on SIGTERM from timeout)
exec timeout -k 5 120 "$HERE/.venv/bin/python" "$HERE/selftest.py"
