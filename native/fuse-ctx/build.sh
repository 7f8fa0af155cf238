#!/bin/sh
# Builds the FUSE caller-context shim (fuse_ctx.c) into $1 (default build/fuse-ctx/fuse_ctx.node). The one place for
# its compiler flags: run by `npm ci` (package.json install) and, when the file is missing or stale, by lib/pem-fs/fuse-ctx.ts.
set -eu
here=$(dirname "$0")
out=${1:-"$here/../../build/fuse-ctx/fuse_ctx.node"}
mkdir -p "$(dirname "$out")"
tmp="$out.$$.tmp"
cc -shared -fPIC -O2 -Wall -o "$tmp" "$here/fuse_ctx.c" -ldl
mv -f "$tmp" "$out"
