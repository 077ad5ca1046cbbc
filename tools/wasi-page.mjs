// Runs a WASI command module inside a Playwright page through @bjorn3/browser_wasi_shim (served from the repository's
// node_modules): files maps names under /data to URLs the page fetches into memory first. Used by the relaxed-SIMD
// browser test and tools/bench-wasm.mjs; env is a list of "NAME=value". Returns { code, out, err } (stdout and stderr).
export function runWasiInPage(page, url, args, files = {}, env = []) {
  return page.evaluate(async ({ url, args, files, env }) => {
    const { WASI, File, OpenFile, ConsoleStdout, PreopenDirectory } = await import('/node_modules/@bjorn3/browser_wasi_shim/dist/index.js');
    const contents = new Map();
    for (const [name, u] of Object.entries(files)) contents.set(name, new File(await (await fetch(u)).arrayBuffer(), { readonly: true }));
    const out = [];
    const err = [];
    const dec = [new TextDecoder(), new TextDecoder()];
    const fds = [new OpenFile(new File([])), new ConsoleStdout((b) => out.push(dec[0].decode(b, { stream: true }))),
      new ConsoleStdout((b) => err.push(dec[1].decode(b, { stream: true }))), new PreopenDirectory('/data', contents)];
    const wasi = new WASI(args, env, fds, { debug: false });
    const { instance } = await WebAssembly.instantiateStreaming(fetch(url), { wasi_snapshot_preview1: wasi.wasiImport });
    const code = wasi.start(instance);
    return { code, out: out.join(''), err: err.join('') };
  }, { url, args, files, env });
}

// (v128, v128, v128) -> v128 through i32x4.relaxed_dot_i8x16_i7x16_add_s (0xfd 0x113): valid only where relaxed SIMD is
export const RELAXED_PROBE = [0, 97, 115, 109, 1, 0, 0, 0, 1, 8, 1, 96, 3, 123, 123, 123, 1, 123, 3, 2, 1, 0, 10, 13, 1, 11, 0,
  32, 0, 32, 1, 32, 2, 253, 147, 2, 11];
