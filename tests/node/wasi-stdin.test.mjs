// The WASI runner's stdin blocks as a program's should (issue 11): `chat` in a terminal waits for the user's line
// instead of quitting at once, and `run -f -` waits for a slow pipe instead of reading an empty prompt. The
// terminal is a real pseudo-terminal (util-linux `script`); input is typed only once the program waits for it.
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const MODEL = path.join(root, 'models', 'ternlm-tinystories.gguf');
const native = process.env.TERNLM_NATIVE || path.join(root, 'build', 'ternlm');
const wasm = process.env.TERNLM_WASI || path.join(root, 'build-wasi', 'ternlm.wasm');
const runner = ['--no-warnings', path.join(root, 'node', 'ternlm-wasi.mjs'), '--dir=/', wasm];
const quote = (s) => `'${s.replaceAll("'", "'\\''")}'`;

// Resolves with the child's exit code and output; rejects after `ms`.
function finished(child, ms, out) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`no exit after ${ms} ms; output:\n${out()}`)); }, ms);
    child.on('close', (code) => { clearTimeout(timer); resolve(code); });
  });
}

test('chat in a terminal waits for input, answers as native does, and exits on /exit', async () => {
  const chatArgs = ['chat', '-m', MODEL, '-n', '12', '--temp', '0'];
  const nativeReply = execFileSync(native, chatArgs, { input: 'Tell me a story.\n/exit\n', stdio: ['pipe', 'pipe', 'ignore'] }).toString();
  assert.ok(nativeReply.trim().length > 0);
  const cmd = ['node', ...runner, ...chatArgs].map(quote).join(' ');
  const child = spawn('script', ['-qefc', cmd, '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let typed = 0;
  const script = ['Tell me a story.\n', '/exit\n'];
  child.stdout.on('data', (d) => {
    out += d.toString();
    const prompts = out.split('\n> ').length - 1 + (out.startsWith('> ') ? 1 : 0);
    // type the next line only once the program shows its prompt for it
    if (typed < script.length && prompts > typed && /> $/.test(out)) child.stdin.write(script[typed++]);
  });
  const code = await finished(child, 60000, () => out);
  const screen = out.replaceAll('\r\n', '\n');
  assert.equal(typed, 2, `the program quit before reading both lines:\n${screen}`);
  assert.equal(code, 0, screen);
  assert.ok(screen.includes(nativeReply), `the reply differs from native's ${JSON.stringify(nativeReply)}:\n${screen}`);
});

test('run -f - reads a prompt that arrives late on a pipe', async () => {
  const runArgs = ['-n', '12', '--temp', '0', '--no-display-prompt', '-m', MODEL];
  const expected = execFileSync(native, ['run', '-p', 'Once upon a time', ...runArgs], { stdio: ['ignore', 'pipe', 'ignore'] }).toString();
  const child = spawn('node', [...runner, 'run', '-f', '-', ...runArgs], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d) => { out += d.toString(); });
  setTimeout(() => child.stdin.end('Once upon a time'), 1500); // after the module has started reading
  const code = await finished(child, 60000, () => out);
  assert.equal(code, 0);
  assert.equal(out, expected);
});

test('run -f - in a terminal reads the typed prompt up to Ctrl-D', async () => {
  const runArgs = ['run', '-f', '-', '-n', '12', '--temp', '0', '--no-display-prompt', '-m', MODEL];
  const expected = execFileSync(native, runArgs, { input: 'Once upon a time\n', stdio: ['pipe', 'pipe', 'ignore'] }).toString();
  const cmd = ['node', ...runner, ...runArgs].map(quote).join(' ');
  const child = spawn('script', ['-qefc', cmd, '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d) => { out += d.toString(); });
  // typed after the module has started reading: a line, then Ctrl-D (end of input at the start of a line)
  setTimeout(() => child.stdin.write('Once upon a time\n'), 1500);
  setTimeout(() => child.stdin.write('\x04'), 2000);
  const code = await finished(child, 60000, () => out);
  const screen = out.replaceAll('\r\n', '\n');
  assert.equal(code, 0, screen);
  assert.ok(expected.trim().length > 0);
  assert.ok(screen.includes(`Once upon a time\n${expected}`), `expected the echoed prompt, then the completion ${JSON.stringify(expected)}:\n${JSON.stringify(screen)}`);
});
