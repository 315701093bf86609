import { getAsset, isSea } from 'node:sea';
import { runHubCli } from '../../central-hub/cli.ts';
import { HUB_CHECKPOINT_ASSET, nativeBindingPath } from './sea-runtime.ts';

/**
 * The hub's single-executable entry: the CLI, with the SQLite store's addon extracted from the executable
 * into the data directory and the checkpoint thread's bundled code. Product code never imports
 * installers/: this file hands both in (and outside a SEA hands in nothing, like the checkout's bin).
 */
runHubCli(
  process.argv.slice(2),
  isSea() ? { nativeBinding: (dataDir) => nativeBindingPath(dataDir), checkpointer: { code: getAsset(HUB_CHECKPOINT_ASSET, 'utf8') } } : {},
);
