/**
 * What the single executables get for `import ... from 'node-opcua'`: the client side only.
 *
 * The umbrella package also loads node-opcua-server and node-opcua-address-space, whose test helpers look
 * for package.json and nodeset XML files on disk when they are imported — files a single executable does
 * not have — and which cost ~2 s of start-up. The product is an OPC UA *client*. If product code imports
 * a name that is not here, the build fails with esbuild's "No matching export" instead of shipping a
 * broken executable: import it from the sub-package that has it, and add it here.
 */
export * from 'node-opcua-client';
export { OPCUACertificateManager } from 'node-opcua-certificate-manager';
// the library's own log output, routed by agent/drivers/opcua/library-log.ts
export { setErrorLogger, setWarningLogger } from 'node-opcua-debug';
