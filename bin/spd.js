#!/usr/bin/env node
// Launcher: the compiled CLI in dist/ (build with `npm run build`).
require('../dist/lib/cli/spd.js')
