// @ts-check
// The Models screen: every catalog model (installed or not, with its size) and imported folders,
// and the download of a catalog model with progress, cancel and resume.
import { APP_EVENTS, on } from '../events.js';
import { byId, el, formatGigabytes, scoped, toast } from '../dom.js';
import { state, downloadModel, cancelDownload, loadModels } from '../store.js';

/** @typedef {import('../types.js').ModelEntry} ModelEntry */
/** @typedef {import('../events.js').DownloadState} DownloadState */

const root = byId('screen-models');
const { q } = scoped(root);

/** @param {ModelEntry} m */
function describe(m) {
  const d = m.defaults;
  const parts = [`${d.width}×${d.height}`, `${d.steps} steps`, `guidance ${d.guidance}`, d.scheduler];
  if (m.limits) parts.push(`sizes ${m.limits.min_side}–${m.limits.max_side} in steps of ${m.limits.side_step}`);
  return parts.join(' · ');
}

/** @param {ModelEntry} m */
function row(m) {
  const d = state.download;
  const mine = d.id === m.id;
  const size = m.approx_bytes ? `about ${formatGigabytes(m.approx_bytes)}` : 'imported folder';
  const status = m.installed ? 'Installed' : mine && d.running ? 'Downloading…' : 'Not downloaded';
  /** @type {HTMLElement[]} */
  const actions = [];
  if (!m.installed && m.approx_bytes) {
    const resume = mine && !d.running && d.error;
    const button = el('button', { type: 'button', className: 'primary', dataset: { action: 'download' }, disabled: d.running },
      resume ? `Resume the download of ${m.name}` : `Download ${m.name} (${size})`);
    button.addEventListener('click', async () => {
      if (await downloadModel(m.id)) toast(`${m.name} is ready`);
      else if (state.download.error && state.download.errorKind !== 'cancelled') toast(state.download.error, 'error');
    });
    actions.push(button);
  }
  /** @type {HTMLElement | null} */
  let progress = null;
  if (mine && d.running) {
    const bar = el('progress', { max: Math.max(d.progress?.bytes_total || 0, 1), value: d.progress?.bytes_done || 0 });
    const text = d.progress
      ? `${(d.progress.bytes_done / 1e6).toFixed(1)} of ${(d.progress.bytes_total / 1e6).toFixed(1)} MB · ${d.progress.file}`
      : 'Checking what is already here…';
    const cancel = el('button', { type: 'button', className: 'link-button', dataset: { action: 'cancel' } }, 'Cancel');
    cancel.addEventListener('click', () => { cancelDownload(); });
    progress = el('div', { className: 'model-progress' }, bar, el('span', { className: 'muted progress-text' }, text), cancel);
  }
  const problem = mine && !d.running && d.error
    ? el('p', { className: d.errorKind === 'cancelled' ? 'muted' : 'error', role: 'alert' },
      d.errorKind === 'cancelled' ? 'Download paused; it resumes where it stopped.' : d.error)
    : null;
  return el('li', { className: `model${m.installed ? ' installed' : ''}`, dataset: { modelId: m.id, installed: String(m.installed) } },
    el('div', { className: 'model-head' },
      el('h2', {}, m.name),
      el('span', { className: `badge${m.installed ? ' ok' : ''}` }, status),
      el('span', { className: 'muted' }, size)),
    el('p', { className: 'muted model-detail' }, describe(m)),
    progress, problem,
    actions.length ? el('div', { className: 'model-actions' }, ...actions) : null);
}

/** What the list was last drawn for: progress alone only updates the bar in place. */
let drawn = '';

function render() {
  const d = state.download;
  drawn = JSON.stringify([d.id, d.running, d.error, Boolean(d.progress)]);
  q('#model-list').replaceChildren(...state.models.map(row));
  q('#models-empty').hidden = state.models.length > 0;
}

/** @param {DownloadState} d */
function onDownload(d) {
  const shape = JSON.stringify([d.id, d.running, d.error, Boolean(d.progress)]);
  const box = d.id ? q('#model-list').querySelector(`li[data-model-id="${CSS.escape(d.id)}"] .model-progress`) : null;
  if (shape !== drawn || !box || !d.progress) { render(); return; }
  const bar = box.querySelector('progress');
  if (bar) { bar.max = Math.max(d.progress.bytes_total, 1); bar.value = d.progress.bytes_done; }
  const text = box.querySelector('.progress-text');
  if (text) text.textContent = `${(d.progress.bytes_done / 1e6).toFixed(1)} of ${(d.progress.bytes_total / 1e6).toFixed(1)} MB · ${d.progress.file}`;
}

/** Wires the screen; the model store drives it. */
export function initModels() {
  on(APP_EVENTS.MODELS_CHANGED, render);
  on(APP_EVENTS.MODEL_DOWNLOAD, onDownload);
  on(APP_EVENTS.SCREEN_SHOWN, (name) => {
    if (name === 'models' && !state.download.running) loadModels().catch((e) => toast(e, 'error'));
  });
  q('#models-refresh').addEventListener('click', () => { loadModels().catch((e) => toast(e, 'error')); });
  render();
}
