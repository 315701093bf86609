/**
 * What the CLI uses from the OPC UA driver. Import this lazily (it loads node-opcua, ~2 s), except
 * `pkiTrust`, which `./pki.ts` provides without node-opcua.
 */
export { create } from './opcua-driver.ts';
export { browse, formatBrowse, emitConfig, type BrowseNode, type BrowseOptions } from './browse.ts';
export { checkLive } from './check-live.ts';
export { pkiTrust, listRejected } from './pki.ts';
export { opcuaConfigSchema, type OpcuaConfig } from './config.ts';
