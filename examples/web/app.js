// The example chat page: load a model with a progress bar, stream text with tokens/s, stop a reply.
import { clearCache, load } from '../../web/src/index.js';

const $ = (id) => document.getElementById(id);
let model = null;
let controller = null;
const history = [];

$('model').addEventListener('change', () => { $('url').hidden = $('model').value !== 'custom'; });

function status(text) { $('status').textContent = text; }

$('load').addEventListener('click', async () => {
  const url = $('model').value === 'custom' ? $('url').value : $('model').value;
  $('load').disabled = true;
  $('go').disabled = true;
  await model?.unload();
  model = null;
  const t0 = performance.now();
  try {
    status('downloading…');
    model = await load(url, {
      onProgress: ({ loaded, total, fromCache }) => {
        $('progress').value = loaded / total;
        status(`${fromCache ? 'from cache' : 'downloading'} ${(loaded / 1e6).toFixed(1)} / ${(total / 1e6).toFixed(1)} MB`);
      },
    });
    const i = model.info;
    status(`ready: ${i.arch}, ${(i.params / 1e6).toFixed(1)}M parameters, ${i.weightType} (${model.fromCache ? 'from cache, ' : ''}${Math.round(performance.now() - t0)} ms)`);
    document.body.dataset.ready = '1';
    $('go').disabled = false;
  } catch (e) {
    status(`error: ${e.name}: ${e.message}`);
    document.body.dataset.error = e.name;
  } finally {
    $('load').disabled = false;
  }
});

$('form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  if (!model) return;
  const prompt = $('prompt').value;
  const chat = document.querySelector('input[name=mode]:checked').value === 'chat';
  const opts = { maxTokens: Number($('max').value), temperature: Number($('temp').value), ignoreEos: $('noeos').checked };
  const turn = document.createElement('div');
  turn.className = 'turn';
  turn.textContent = chat ? '' : prompt;
  if (chat) {
    const q = document.createElement('div');
    q.className = 'user';
    q.textContent = prompt;
    $('log').append(q);
    history.push({ role: 'user', content: prompt });
  } else {
    $('log').replaceChildren();
  }
  const out = document.createElement('span');
  out.className = 'out';
  turn.append(out);
  $('log').append(turn);
  controller = new AbortController();
  $('go').disabled = true;
  $('stop').disabled = false;
  document.body.dataset.generating = '1';
  const t0 = performance.now();
  let n = 0;
  try {
    const it = chat ? model.chat(history, { ...opts, signal: controller.signal }) : model.generate(prompt, { ...opts, signal: controller.signal });
    for await (const piece of it) {
      out.textContent += piece;
      n++;
      $('speed').textContent = `${n} pieces, ${(n / ((performance.now() - t0) / 1000)).toFixed(1)} tokens/s`;
    }
    const s = model.stats;
    if (s) $('speed').textContent = `prompt ${s.promptTokens} tokens; ${s.generatedTokens} tokens at ${(s.generatedTokens / (s.generateMs / 1000)).toFixed(1)} tokens/s`;
  } catch (e) {
    if (e.name !== 'AbortError') status(`error: ${e.name}: ${e.message}`);
    else out.textContent += ' [stopped]';
  } finally {
    if (chat) history.push({ role: 'assistant', content: out.textContent.replace(/ \[stopped\]$/, '') });
    $('go').disabled = false;
    $('stop').disabled = true;
    delete document.body.dataset.generating;
    document.body.dataset.done = String(Number(document.body.dataset.done || 0) + 1);
  }
});

$('stop').addEventListener('click', () => controller?.abort());
$('clear').addEventListener('click', async () => { await clearCache(); status('cache cleared'); });
