#!/usr/bin/env node
// `plantbridge-hub` from a checkout: `npm run -s hub -- …` runs this file (package.json "scripts" and "bin"). npm
// puts node_modules/.bin first on the PATH, so `node` is the project's pinned Node 24, which runs the
// TypeScript CLI as it is. (`npx plantbridge-hub` does not: npx does not run a project's own bins.) Plant
// servers and installed hubs run the single executable instead (installers/).
import { runHubCli } from '../cli.ts';

runHubCli(process.argv.slice(2));
