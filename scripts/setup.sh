#!/bin/sh
# Installs what the project needs on a fresh Debian machine, then the npm modules: the one list of system packages
# (`npm test`, `npm run demo` and .ci/run all start here). Quiet and quick when everything is already in place.
#   libzstd-dev liblz4-dev  compression libraries of the native addon     fuse3           fusermount3
#   libfuse3-dev pkg-config the addon's native FUSE session (native/fuse/; binding.gyp asks pkg-config for its flags)
#   openssl                 `openssl speed` baselines                     fio             the pemfs workload tests
#   nftables iproute2       network-namespace partition tests            python3 util-linux  the POSIX comparison suite (setpriv)
# `setup.sh --bench` also installs what only the benchmarks use: gocryptfs (the fs baseline).
set -eu
cd "$(dirname "$0")/.."
PACKAGES="libzstd-dev liblz4-dev libfuse3-dev pkg-config fuse3 openssl fio nftables iproute2 python3 util-linux"
[ "${1:-}" = --bench ] && PACKAGES="$PACKAGES gocryptfs"

missing=""
for pkg in $PACKAGES; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing="$missing $pkg"
done
if [ -n "$missing" ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "setup: missing Debian packages:$missing — run as root, or: apt-get install$missing" >&2
    exit 1
  fi
  echo "setup: installing$missing" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq $missing >/dev/null
fi

# FUSE: the device, and the control file system that frees a stuck mount (docs/OPERATIONS.md).
if [ "$(id -u)" = 0 ]; then
  [ -e /dev/fuse ] || modprobe fuse 2>/dev/null || true
  mountpoint -q /sys/fs/fuse/connections 2>/dev/null || mount -t fusectl none /sys/fs/fuse/connections 2>/dev/null || true
fi

addons_load() {
  node -e "require('node-gyp-build')(process.cwd()); require('sodium-native')" 2>/dev/null
}
if [ ! -d node_modules ] || ! addons_load; then
  echo "setup: npm ci" >&2
  npm ci --no-audit --no-fund
  addons_load || { echo "setup: a native addon does not load after npm ci" >&2; exit 1; }
fi
