#!/usr/bin/env -S MALLOC_ARENA_MAX=2 MALLOC_MMAP_THRESHOLD_=1048576 node --max-semi-space-size=1
// Launcher: the compiled CLI in dist/ (build with `npm run build`). The node flag and the environment are the mount
// daemon's (lib/pem-fs/daemon.ts DAEMON_NODE_FLAGS, DAEMON_ENV), here for `pemfs mount --foreground` started by a
// service manager.
require('../dist/lib/cli/pemfs.js')
