// The scheduler's options change which tokens share a step, never a text: requests run concurrently under
// --fill-tile (pending prompt tokens fill a step's last GEMM tile), --alone-max, --join-below, --prefill-alone 0, a small step
// budget (-b 16, so prompts go in chunks beside decode tokens) and --admit-wait must give the texts of the same
// requests run one at a time on a one-slot server. The step log shows that tiles were filled.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';

import { postJson, startServer } from './helpers.mjs';

const STREAMS = 6, ROUNDS = 3;
const OPENINGS = ['Once upon a time', 'The little dog', 'One day, Tom', 'Lily wanted a', 'The sun was', 'A big red ball'];

// prompts of 5 to ~40 tokens, so some take several 16-token steps
const body = (s, r) => ({ model: 'ternlm-tinystories', prompt: `${OPENINGS[s]}${' and then they played'.repeat((s + r) % 4 * 2)}`,
                          max_tokens: 6 + ((s * 5 + r * 3) % 12), temperature: 0.8, seed: 100 * s + r });

async function texts(srv, concurrent) {
  const out = new Map();
  const one = async (s, r) => {
    const res = await postJson(srv.base, '/v1/completions', body(s, r));
    assert.equal(res.status, 200, JSON.stringify(res.body));
    out.set(`${s}/${r}`, `${res.body.choices[0].finish_reason}|${res.body.choices[0].text}`);
  };
  for (let r = 0; r < ROUNDS; r++) {
    if (concurrent) await Promise.all(Array.from({ length: STREAMS }, (_, s) => one(s, r)));
    else for (let s = 0; s < STREAMS; s++) await one(s, r);
  }
  return out;
}

const CONFIGS = [
  ['-b', '16', '--fill-tile', '8', '--alone-max', '1', '--admit-wait', '10'],
  ['-b', '16', '--fill-tile', '3', '--prefill-alone', '0'],
  ['--fill-tile', '0', '--alone-max', '4', '--join-below', '32'],
];

test('scheduling options give the texts of the requests run alone; filled steps end on a tile boundary', async () => {
  const solo = await startServer(['-np', '1', '-t', '2']);
  let alone;
  try {
    alone = await texts(solo, false);
  } finally {
    assert.equal((await solo.stop()).code, 0);
  }
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ternlm-sched-'));
  try {
    for (const [k, flags] of CONFIGS.entries()) {
      const log = path.join(dir, `steps${k}.log`);
      process.env.TERNLM_STEP_LOG = log;
      const srv = await startServer(['-np', '4', '-t', '2', ...flags]);
      delete process.env.TERNLM_STEP_LOG;
      try {
        const got = await texts(srv, true);
        for (const [key, text] of alone) assert.equal(got.get(key), text, `${flags.join(' ')}: request ${key}`);
      } finally {
        assert.equal((await srv.stop()).code, 0);
      }
      if (k === 0) { // steps whose last tile pending prompt tokens filled: never past that tile's end
        const filled = readFileSync(log, 'utf8').split('\n').map((l) => l.split(' ')).filter((l) => l[1] === 'gap')
          .map((l) => ['decode', 'prompt', 'fill'].map((f) => Number(l[l.indexOf(f) + 1]))).filter(([, , f]) => f > 0);
        assert.ok(filled.length > 0, 'some steps were filled to their tile');
        for (const [d, p, f] of filled) assert.ok(Math.ceil((d + p) / 8) * 8 - (d + p - f) < 8, `fill within one tile: ${d} ${p} ${f}`);
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
