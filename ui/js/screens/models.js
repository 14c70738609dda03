// @ts-check
// The Models screen: every catalog model (installed or not, with its size), imported folders and
// single-file checkpoints (with where they are on disk), the download of a catalog model with
// progress, cancel and resume, the import of a checkpoint with an installed model's configs, and
// the LoRA library beside them (import, remove).
import { toCommandError } from '../api.js';
import { APP_EVENTS, on } from '../events.js';
import { byId, el, formatBytes, formatGigabytes, plural, scoped, toast } from '../dom.js';
import {
  state, downloadModel, cancelDownload, loadModels, importCheckpoint, loadLoras, importLora, removeLora,
  forgetModel, FAMILY_LABELS,
} from '../store.js';
import { api } from '../api.js';
import { confirmDialog } from '../components/confirm-dialog.js';

/** @typedef {import('../types.js').ModelEntry} ModelEntry */
/** @typedef {import('../types.js').ModelSource} ModelSource */
/** @typedef {import('../types.js').LoraEntry} LoraEntry */
/** @typedef {import('../events.js').DownloadState} DownloadState */

const root = byId('screen-models');
const { q } = scoped(root);
const configSelect = q('#checkpoint-config', HTMLSelectElement);
const checkpointButton = q('#import-checkpoint', HTMLButtonElement);
const loraButton = q('#import-lora', HTMLButtonElement);

/** @type {Record<ModelSource, string>} */
const SOURCES = { catalog: 'Catalog', folder: 'Imported folder', checkpoint: 'Single-file checkpoint' };

/** Whether a picker (and the import after it) is open, per kind. */
const busy = { checkpoint: false, lora: false };

/** @param {ModelEntry} m */
function describe(m) {
  const d = m.defaults;
  const parts = [`${d.width}×${d.height}`, plural(d.steps, 'step'), `guidance ${d.guidance}`, d.scheduler];
  if (m.limits) parts.push(`sizes ${m.limits.min_side}–${m.limits.max_side} in steps of ${m.limits.side_step}`);
  return parts.join(' · ');
}

/** @param {ModelEntry} m */
function row(m) {
  const d = state.download;
  const mine = d.id === m.id;
  const size = m.source === 'catalog' && m.approx_bytes ? `about ${formatGigabytes(m.approx_bytes)}` : null;
  const status = m.installed ? 'Installed'
    : m.source !== 'catalog' ? 'Missing on disk'
      : mine && d.running ? 'Downloading…' : 'Not downloaded';
  /** @type {HTMLElement[]} */
  const actions = [];
  if (!m.installed && size) {
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
  const checked = el('p', { className: 'muted model-detail', dataset: { field: 'verify' }, role: 'status' });
  if (m.installed && m.source === 'catalog') {
    const button = el('button', { type: 'button', dataset: { action: 'verify' } }, 'Verify files');
    button.addEventListener('click', async () => {
      button.disabled = true;
      checked.textContent = 'Checking every file…';
      try {
        const r = await api.verifyModel(m.id);
        checked.className = r.missing.length || r.corrupt.length ? 'error model-detail' : 'muted model-detail';
        checked.textContent = r.missing.length || r.corrupt.length
          ? `${r.missing.length} missing, ${r.corrupt.length} damaged: download again to repair`
          : `All ${r.ok.length} files are intact`;
      } catch (e) {
        checked.className = 'error model-detail';
        checked.textContent = toCommandError(e).message;
      } finally {
        button.disabled = false;
      }
    });
    actions.push(button);
  }
  if (m.source !== 'catalog' || m.installed) {
    const catalog = m.source === 'catalog';
    const button = el('button', { type: 'button', className: 'link-button danger', dataset: { action: 'forget' } },
      catalog ? 'Delete the downloaded files' : 'Remove from the list');
    button.addEventListener('click', async () => {
      const what = m.source === 'checkpoint' ? 'file' : 'folder';
      const size = m.facts ? ` (${formatBytes(m.facts.bytes)})` : '';
      const confirmed = catalog
        ? await confirmDialog(`Delete ${m.name}?`, `Its downloaded files${size} are deleted; you can download it again.`, 'Delete')
        : await confirmDialog(`Remove ${m.name}?`, `It leaves the model list; the ${what} stays on disk.`, 'Remove');
      if (!confirmed) return;
      try {
        await forgetModel(m.id);
        toast(catalog ? `${m.name} deleted` : `${m.name} removed from the list`);
      } catch (e) {
        toast(toCommandError(e).message, 'error');
      }
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
  const location = m.installed && m.location
    ? el('p', { className: 'muted model-detail model-location' }, 'On disk: ', el('code', { dataset: { field: 'location' } }, m.location))
    : null;
  const facts = m.facts
    ? el('p', { className: 'muted model-detail', dataset: { field: 'facts' } },
      `${m.facts.family_name} · ${m.facts.precision} · ${formatBytes(m.facts.bytes)} on disk`)
    : null;
  return el('li', { className: `model${m.installed ? ' installed' : ''}`, dataset: { modelId: m.id, installed: String(m.installed), source: m.source } },
    el('div', { className: 'model-head' },
      el('h2', {}, m.name),
      el('span', { className: `badge${m.installed ? ' ok' : ''}` }, status),
      el('span', { className: 'badge source', dataset: { field: 'source' } }, SOURCES[m.source] || m.source),
      size ? el('span', { className: 'muted' }, size) : null),
    el('p', { className: 'muted model-detail' }, describe(m)),
    facts,
    location,
    progress, problem,
    actions.length ? el('div', { className: 'model-actions' }, ...actions) : null,
    checked);
}

/** What the list was last drawn for: progress alone only updates the bar in place. */
let drawn = '';

function render() {
  const d = state.download;
  drawn = JSON.stringify([d.id, d.running, d.error, Boolean(d.progress)]);
  q('#model-list').replaceChildren(...state.models.map(row));
  q('#models-empty').hidden = state.models.length > 0;
  renderCheckpointImport();
}

// --- single-file checkpoints ------------------------------------------------------------------

/** The installed models whose configs and tokenizer a checkpoint can borrow. */
const configModels = () => state.models.filter((m) => m.installed && m.source !== 'checkpoint');

/** The engine's own configs: for the file's family, or SD 2.1's 512 epsilon base by choice. */
const BUILTIN = [['builtin', "Built-in, for the file's family"], ['builtin:sd21-base', 'Built-in SD 2.1 base (512, epsilon)']];

function renderCheckpointImport() {
  const before = configSelect.value;
  const models = configModels();
  configSelect.replaceChildren(
    ...BUILTIN.map(([value, text]) => el('option', { value }, text)),
    ...models.map((m) => el('option', { value: m.id }, `Those of ${m.name}`)));
  const values = [...BUILTIN.map(([v]) => v), ...models.map((m) => m.id)];
  configSelect.value = values.includes(before) ? before : 'builtin';
  configSelect.disabled = busy.checkpoint;
  checkpointButton.disabled = busy.checkpoint;
  checkpointButton.textContent = busy.checkpoint ? 'Importing…' : 'Import a checkpoint…';
}

/** Picks a checkpoint file and registers it with the chosen model's configs. */
async function onImportCheckpoint() {
  const configId = configSelect.value;
  if (!configId || busy.checkpoint) return;
  busy.checkpoint = true;
  q('#checkpoint-error').textContent = '';
  renderCheckpointImport();
  try {
    const added = await importCheckpoint(configId);
    if (added) {
      toast(added.length ? `Imported ${added.map((m) => m.name).join(', ')}` : 'That checkpoint was already imported');
      const first = added[0];
      if (first) q('#model-list').querySelector(`li[data-model-id="${CSS.escape(first.id)}"]`)?.scrollIntoView({ block: 'nearest' });
    }
  } catch (e) {
    const err = toCommandError(e);
    q('#checkpoint-error').textContent = err.message;
    if (err.kind === 'not_installed') loadModels().catch(() => {});
  } finally {
    busy.checkpoint = false;
    renderCheckpointImport();
  }
}

// --- LoRAs ------------------------------------------------------------------------------------

/** @param {LoraEntry} l */
function loraRow(l) {
  const remove = el('button', { type: 'button', className: 'link-button danger', dataset: { action: 'remove' }, title: `Remove ${l.name} from the LoRA library` }, 'Remove');
  remove.addEventListener('click', () => onRemoveLora(l));
  return el('li', { className: 'lora', dataset: { loraName: l.name } },
    el('div', { className: 'lora-text' },
      el('span', { className: 'lora-name', title: l.path }, l.name),
      el('code', { className: 'muted lora-tag' }, `<lora:${l.name}:0.8>`)),
    l.family ? el('span', { className: 'badge', dataset: { field: 'family' }, title: `Fits ${FAMILY_LABELS[l.family]} models` }, FAMILY_LABELS[l.family]) : null,
    el('span', { className: 'muted lora-size' }, formatBytes(l.bytes)),
    remove);
}

function renderLoras() {
  q('#lora-list').replaceChildren(...state.loras.map(loraRow));
  q('#loras-empty').hidden = state.loras.length > 0;
  loraButton.disabled = busy.lora;
  loraButton.textContent = busy.lora ? 'Importing…' : 'Import a LoRA…';
}

/** Picks a LoRA file and copies it into the library. */
async function onImportLora() {
  if (busy.lora) return;
  busy.lora = true;
  q('#lora-error').textContent = '';
  renderLoras();
  try {
    const added = await importLora();
    if (added) toast(added.length ? `Imported the LoRA ${added.map((l) => l.name).join(', ')}` : 'That LoRA is already in the library');
  } catch (e) {
    q('#lora-error').textContent = toCommandError(e).message;
  } finally {
    busy.lora = false;
    renderLoras();
  }
}

/** @param {LoraEntry} l */
async function onRemoveLora(l) {
  const ok = await confirmDialog(`Remove the LoRA “${l.name}”?`,
    `Its copy in the LoRA library is deleted, and prompts with <lora:${l.name}:…> no longer find it. Images made with it keep it in their recipe.`,
    'Remove');
  if (!ok) return;
  q('#lora-error').textContent = '';
  try {
    await removeLora(l.name);
    toast(`Removed the LoRA ${l.name}`);
  } catch (e) {
    q('#lora-error').textContent = toCommandError(e).message;
    loadLoras().catch(() => {});
  }
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

/**
 * Reloads the models and the LoRAs; on showing the screen, the models not while a download
 * runs (it reports its own).
 * @param {boolean} always
 */
function refresh(always) {
  if (always || !state.download.running) loadModels().catch((e) => toast(e, 'error'));
  loadLoras().catch((e) => toast(e, 'error'));
}

/** Wires the screen; the model store drives it. */
export function initModels() {
  on(APP_EVENTS.MODELS_CHANGED, render);
  on(APP_EVENTS.MODEL_DOWNLOAD, onDownload);
  on(APP_EVENTS.LORAS_CHANGED, renderLoras);
  on(APP_EVENTS.SCREEN_SHOWN, (name) => { if (name === 'models') refresh(false); });
  q('#models-refresh').addEventListener('click', () => refresh(true));
  checkpointButton.addEventListener('click', onImportCheckpoint);
  loraButton.addEventListener('click', onImportLora);
  render();
  renderLoras();
}
