#!/usr/bin/env -S MALLOC_ARENA_MAX=2 MALLOC_MMAP_THRESHOLD_=1048576 node
// Launcher: the compiled CLI in dist/ (build with `npm run build`). The environment is the daemons' (lib/pem-fs/daemon.ts
// DAEMON_ENV).
require('../dist/lib/cli/spd.js')
