// The browser package in headless Chromium (Debian's, through playwright-core), on the example page served from
// 127.0.0.1 with and without COOP/COEP: download with progress, streamed text equal to native's, stop and
// generate again, reload from the cache with no request reaching the server, resume a cut download with Range,
// and typed errors for a 404, a non-GGUF file and a truncated file.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

import { serve } from '../../examples/serve.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const expected = readFileSync(path.join(root, 'tests/expected/default-greedy-150.txt'), 'utf8');
const MODEL = '/models/ternlm-tinystories.gguf';
const tmpDir = path.join(root, 'tests/browser/tmp');

async function browser(profile) {
  return chromium.launchPersistentContext(profile, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
}

function requests(log, p) {
  try {
    return readFileSync(log, 'utf8').split('\n').filter((l) => l.startsWith(`GET ${p} `));
  } catch {
    return [];
  }
}

async function loadOnPage(page) {
  await page.click('#load');
  await page.waitForFunction(() => document.body.dataset.ready === '1' || document.body.dataset.error, null, { timeout: 60000 });
  assert.equal(await page.evaluate(() => document.body.dataset.error), undefined, await page.textContent('#status'));
}

async function generate(page, { max = 150, temp = 0, stopAfter = 0 } = {}) {
  const before = Number(await page.evaluate(() => document.body.dataset.done || 0));
  await page.fill('#max', String(max));
  await page.fill('#temp', String(temp));
  await page.setChecked('#noeos', stopAfter > 0); // a reply that cannot end by itself before Stop
  await page.click('#go');
  if (stopAfter) {
    await page.waitForFunction((n) => document.querySelector('.out')?.textContent.length > n, stopAfter, { timeout: 60000 });
    await page.click('#stop');
  }
  await page.waitForFunction((b) => Number(document.body.dataset.done || 0) > b, before, { timeout: 120000 });
  return page.textContent('.out');
}

for (const isolate of [false, true]) {
  describe(`example page ${isolate ? 'with' : 'without'} COOP/COEP`, () => {
    let server;
    let ctx;
    let base;
    let log;
    let profile;
    before(async () => {
      const dir = mkdtempSync(path.join(os.tmpdir(), 'ternlm-web-'));
      log = path.join(dir, 'requests.log');
      profile = path.join(dir, 'profile');
      server = await serve({ isolate, log });
      base = `http://127.0.0.1:${server.address().port}`;
      ctx = await browser(profile);
    });
    after(async () => {
      await ctx?.close();
      server?.close();
    });

    test('loads the default model over HTTP with progress, streams native\'s greedy text', async () => {
      const page = await ctx.newPage();
      page.on('console', (m) => { if (m.type() === 'error') console.error('[page]', m.text()); });
      await page.goto(`${base}/examples/web/`);
      assert.equal(await page.evaluate(() => crossOriginIsolated), isolate);
      await loadOnPage(page);
      assert.match(await page.textContent('#status'), /ready: bitnet-b1\.58/);
      assert.equal(await page.evaluate(() => document.getElementById('progress').value), 1);
      assert.equal(requests(log, MODEL).length, 1, 'one download');
      const text = await generate(page);
      assert.equal(text, expected, 'the browser streams the same greedy text as native');
      await page.close();
    });

    test('stop a generation, then generate again', async () => {
      const page = await ctx.newPage();
      await page.goto(`${base}/examples/web/`);
      await loadOnPage(page);
      const stopped = await generate(page, { max: 4000, temp: 0.8, stopAfter: 20 });
      assert.match(stopped, /\[stopped\]$/);
      assert.ok(stopped.length < 4000 * 3, 'the stop took effect');
      assert.equal(await generate(page), expected, 'usable after an aborted generation');
      await page.close();
    });

    test('a reload loads from the cache: no request reaches the server', async () => {
      const n = requests(log, MODEL).length;
      const page = await ctx.newPage();
      await page.goto(`${base}/examples/web/`);
      await loadOnPage(page);
      assert.match(await page.textContent('#status'), /from cache/);
      assert.equal(requests(log, MODEL).length, n, 'the model came from the cache');
      const list = await page.evaluate(async () => (await import('/web/src/index.js')).listCache());
      assert.ok(list.some((e) => e.url.endsWith(MODEL)), JSON.stringify(list));
      await page.close();
    });

    test('typed errors: 404, not a GGUF file, a truncated file', async () => {
      mkdirSync(tmpDir, { recursive: true });
      const full = readFileSync(path.join(root, MODEL.slice(1)));
      writeFileSync(path.join(tmpDir, 'truncated.gguf'), full.subarray(0, 100000));
      const page = await ctx.newPage();
      await page.goto(`${base}/examples/web/`);
      const errs = await page.evaluate(async () => {
        const { load } = await import('/web/src/index.js');
        const out = {};
        for (const [k, u] of [['missing', '/no/such/model.gguf'], ['notGguf', '/README.md'], ['truncated', '/tests/browser/tmp/truncated.gguf']]) {
          try { await load(u, { cache: 'none' }); out[k] = 'loaded?!'; } catch (e) { out[k] = { name: e.name, status: e.status, message: e.message }; }
        }
        return out;
      });
      assert.equal(errs.missing.name, 'HttpError');
      assert.equal(errs.missing.status, 404);
      assert.equal(errs.notGguf.name, 'FormatError');
      assert.match(errs.notGguf.message, /not a GGUF file/);
      assert.equal(errs.truncated.name, 'FormatError');
      assert.match(errs.truncated.message, /truncated|data ends at byte|file has \d+ left|runs past the end/);
      await page.close();
    });
  });
}

describe('a download cut mid-way', () => {
  test('resumes with a Range request and loads', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'ternlm-cut-'));
    const log = path.join(dir, 'requests.log');
    const server = await serve({ log, cutOnce: `${MODEL}@3000000` });
    const ctx = await browser(path.join(dir, 'profile'));
    try {
      const page = await ctx.newPage();
      await page.goto(`http://127.0.0.1:${server.address().port}/examples/web/`);
      await loadOnPage(page);
      const lines = requests(log, MODEL);
      assert.match(lines[0], /cut@3000000/, lines.join('\n'));
      assert.ok(lines.some((l) => /bytes=[1-9][0-9]*- 206/.test(l)), `a Range request continued the download:\n${lines.join('\n')}`);
      assert.equal(await generate(page), expected, 'the resumed file is intact');
    } finally {
      await ctx.close();
      server.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
