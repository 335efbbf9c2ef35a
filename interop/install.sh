#!/usr/bin/env bash
# Installs the third-party DHT nodes used by the interop tests, inside interop/ only:
# libtorrent and opendht (PyPI), bittorrent-dht (npm), the `mainline` crate (crates.io).
# Idempotent: re-running skips steps already done.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$HERE"

LT_VER=2.1.1
ODHT_VER=4.4.2

# --- Python venv with libtorrent + opendht (cp311 wheels) ---
PY="${INTEROP_PYTHON:-}"
if [ -z "$PY" ]; then
  for c in python3.11 python3; do
    if command -v "$c" >/dev/null 2>&1 && "$c" -c 'import sys; sys.exit(0 if sys.version_info[:2]==(3,11) else 1)' 2>/dev/null; then
      PY="$c"; break
    fi
  done
fi
[ -n "$PY" ] || { echo "install.sh: need python3.11 (the libtorrent/opendht wheels are cp311)" >&2; exit 1; }

VPY="$HERE/.venv/bin/python"
if [ ! -x "$VPY" ]; then
  echo "install.sh: creating venv with $PY" >&2
  "$PY" -m venv "$HERE/.venv"
fi
if "$VPY" - "$LT_VER" "$ODHT_VER" <<'PYEOF' 2>/dev/null
import sys
from importlib.metadata import version
ok = version("libtorrent") == sys.argv[1] and version("opendht") == sys.argv[2]
import libtorrent, opendht  # noqa: F401  (make sure they import)
sys.exit(0 if ok else 1)
PYEOF
then
  echo "install.sh: python packages already installed" >&2
else
  echo "install.sh: pip installing libtorrent==$LT_VER opendht==$ODHT_VER" >&2
  "$VPY" -m pip install --quiet --disable-pip-version-check \
    "libtorrent==$LT_VER" "opendht==$ODHT_VER"
  "$VPY" -c 'import libtorrent, opendht; print("libtorrent", libtorrent.__version__)' >&2
fi

# --- npm: bittorrent-dht + ed25519-supercop, and pkarr (a relay client for the gateway test) ---
cd "$HERE/js"
need_npm=1
if [ -d node_modules ] && [ -f node_modules/.package-lock.json ]; then
  if node -e '
    const v = (n) => require("./node_modules/" + n + "/package.json").version;
    require("ed25519-supercop");
    process.exit(v("bittorrent-dht") === "11.0.12" && v("ed25519-supercop") === "2.0.1" && v("pkarr") === "1.3.0" ? 0 : 1);' 2>/dev/null; then
    need_npm=0
  fi
fi
if [ "$need_npm" = 1 ]; then
  echo "install.sh: npm install in interop/js" >&2
  if [ -f package-lock.json ]; then
    npm ci --no-audit --no-fund --loglevel=error >&2
  else
    npm install --no-audit --no-fund --loglevel=error >&2
  fi
else
  echo "install.sh: node modules already installed" >&2
fi
# --- Rust: a node of the pubky `mainline` crate (version pinned in mainline_node/Cargo.toml,
# dependencies in its Cargo.lock). cargo skips the build when nothing changed.
cd "$HERE/mainline_node"
echo "install.sh: building the mainline crate's driver" >&2
cargo build --locked --quiet

# --- OpenDHT's own proxy server and client: Debian's dhtnode 2.4.12 (the gateway interop) ---
# Unpacked with dpkg -x into interop/dhtnode/ rather than installed, so that no system service is
# enabled or started; dhtnode.sh runs it with the unpacked libraries. Only packages the system
# lacks are fetched.
cd "$HERE"
DHT_ROOT="$HERE/dhtnode"
if [ -x "$DHT_ROOT/usr/bin/dhtnode" ] && "$HERE/dhtnode.sh" --version >/dev/null 2>&1; then
  echo "install.sh: dhtnode already unpacked" >&2
elif command -v apt-get >/dev/null 2>&1; then
  echo "install.sh: fetching dhtnode 2.4.12 (Debian) into interop/dhtnode" >&2
  DEBS="$HERE/.debs"; mkdir -p "$DEBS" "$DHT_ROOT"
  wanted=(dhtnode libopendht2)
  for lib in libargon2-1 libfmt9 libgnutls30 libhttp-parser2.9 libjsoncpp25 libnettle8 libssl3 libreadline8; do
    dpkg-query -W -f='${Status}' "$lib" 2>/dev/null | grep -q "install ok installed" || wanted+=("$lib")
  done
  ( cd "$DEBS" && { apt-get download "${wanted[@]}" >/dev/null 2>&1 || { apt-get update -qq && apt-get download "${wanted[@]}"; }; } )
  for deb in "$DEBS"/*.deb; do dpkg -x "$deb" "$DHT_ROOT"; done
  "$HERE/dhtnode.sh" --version >&2
else
  echo "install.sh: no apt-get: the OpenDHT proxy interop tests will be skipped" >&2
fi
echo "install.sh: done" >&2
