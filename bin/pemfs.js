#!/usr/bin/env -S node --max-semi-space-size=1
// Launcher: the compiled CLI in dist/ (build with `npm run build`). The node flag is the mount daemon's
// (lib/pem-fs/daemon.ts DAEMON_NODE_FLAGS), here for `pemfs mount --foreground` started by a service manager.
require('../dist/lib/cli/pemfs.js')
