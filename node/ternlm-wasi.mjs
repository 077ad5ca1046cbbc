#!/usr/bin/env node
// A wasmtime-like runner for ternlm.wasm (WASI preview1) on Node's node:wasi.
//
//   node node/ternlm-wasi.mjs [--dir=HOST[::GUEST]]... [--env=NAME=VALUE]... [--env-prefix=P] ternlm.wasm ARGS...
//
// Like `wasmtime run --dir . ternlm.wasm run -m model.gguf -p "..."`: every --dir preopens a host folder
// (under its own name, or GUEST). Without --dir the current folder is preopened as ".". The module's exit
// code becomes the process's.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import process from 'node:process';
import v8 from 'node:v8';
import { WASI } from 'node:wasi';

// Node 20's V8 can abort ("Fatal error ... unreachable code" in MarkCompactCollector::ProcessEphemerons) when a
// WASI module grows its memory while incremental marking runs; seen here 3 runs in 4 on the chat test. Turning
// incremental marking off avoids it.
v8.setFlagsFromString('--no-incremental-marking');

// Wasm has no on-stack replacement: a long loop in a function called a few times (the load's repack loops, a
// prompt's GEMMs) runs to its end in V8's baseline tier (Liftoff). Compiling every function with the optimizing
// tier up front (what `node --no-liftoff` does) is faster for a model's load and first tokens (docs/PERFORMANCE.md).
// V8 reads the flag when a module is compiled, so setting it here, before WebAssembly.compile, is enough;
// TERNLM_WASI_LIFTOFF=1 keeps the baseline tier (to compare).
if (process.env.TERNLM_WASI_LIFTOFF !== '1') v8.setFlagsFromString('--no-liftoff');

function usage(code) {
  process.stderr.write('usage: ternlm-wasi.mjs [--dir=HOST[::GUEST]]... [--env=NAME=VALUE]... MODULE.wasm ARGS...\n');
  process.exit(code);
}

export function parseArgs(argv) {
  const preopens = {};
  const env = {};
  let i = 0;
  for (; i < argv.length && argv[i].startsWith('--'); i++) {
    const a = argv[i];
    if (a === '--help' || a === '-h') usage(0);
    if (a.startsWith('--dir=')) {
      const spec = a.slice(6);
      const [host, guest] = spec.includes('::') ? spec.split('::') : [spec, spec];
      preopens[guest] = path.resolve(host);
    } else if (a.startsWith('--env-prefix=')) { // pass host variables with this prefix (tests use TERNLM_)
      const prefix = a.slice(13);
      for (const [k, v] of Object.entries(process.env)) if (k.startsWith(prefix)) env[k] = v;
    } else if (a.startsWith('--env=')) {
      const kv = a.slice(6);
      const eq = kv.indexOf('=');
      if (eq < 1) usage(2);
      env[kv.slice(0, eq)] = kv.slice(eq + 1);
    } else {
      process.stderr.write(`ternlm-wasi: unknown option '${a}'\n`);
      usage(2);
    }
  }
  if (i >= argv.length) usage(2);
  if (Object.keys(preopens).length === 0) preopens['.'] = process.cwd();
  return { wasmPath: argv[i], args: argv.slice(i + 1), preopens, env };
}

// Node makes its stdin non-blocking when it sets up process.stdin (libuv even swaps a non-blocking descriptor onto
// fd 0 for a terminal), so a module's fd_read on stdin gets EAGAIN whenever no byte is ready yet: `chat` in a
// terminal took that for the end of input and quit, and `run -f -` read an empty prompt from a slow pipe. A
// program's stdin blocks; so here a read of fd 0 that would block sleeps briefly and tries again, whatever fd 0
// is (terminal, pipe, socket).
const ERRNO_AGAIN = 6; // wasi_snapshot_preview1's errno for EAGAIN
const RETRY_MS = 10;

export function blockingStdin(wasiImport) {
  const fdRead = wasiImport.fd_read;
  const nap = new Int32Array(new SharedArrayBuffer(4));
  return {
    ...wasiImport,
    fd_read(fd, iovs, iovsLen, nread) {
      for (;;) {
        const rc = fdRead(fd, iovs, iovsLen, nread);
        if (rc !== ERRNO_AGAIN || fd !== 0) return rc;
        Atomics.wait(nap, 0, 0, RETRY_MS);
      }
    },
  };
}

export async function runWasi({ wasmPath, args, preopens, env }) {
  const wasi = new WASI({
    version: 'preview1',
    args: [path.basename(wasmPath), ...args],
    env,
    preopens,
    returnOnExit: true,
  });
  const module = await WebAssembly.compile(await readFile(wasmPath));
  const imports = wasi.getImportObject();
  imports.wasi_snapshot_preview1 = blockingStdin(imports.wasi_snapshot_preview1);
  const instance = await WebAssembly.instantiate(module, imports);
  return wasi.start(instance);
}

if (import.meta.url === `file://${process.argv[1]}` || process.argv[1]?.endsWith('ternlm-wasi.mjs')) {
  const opts = parseArgs(process.argv.slice(2));
  runWasi(opts).then(
    (code) => { process.exitCode = code; },
    (err) => { process.stderr.write(`ternlm-wasi: ${err.message}\n`); process.exitCode = 1; },
  );
}
