// The Node API lives in the package (web/src/node.js, the `ternlm` package's "node" export); this path stays for
// scripts in this repository.
export * from '../web/src/node.js';
