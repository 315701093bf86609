#!/usr/bin/env node
// `npx plantbridge-hub …` in a checkout (after `npm install`): npx puts node_modules/.bin first on the
// PATH, so this runs on the project's pinned Node 24, which runs the TypeScript CLI as it is. Installed
// hubs run the single executable instead (installers/).
import '../cli.ts';
