/** The product version, compiled in (the single executable has no package.json). A test keeps it equal to package.json. */
export const VERSION = '0.1.0';
