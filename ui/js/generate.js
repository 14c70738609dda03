// The generate panel: prompt, styles, model and parameters, validation, the job queue with
// cancel and stop-after-current, and live progress with ETA and preview.
import { api, listen } from './api.js';
import { $, el, toast } from './dom.js';
import { state, on, emit, currentProject } from './state.js';

const SCHEDULERS = [['', 'Model default'], ['ddim', 'DDIM'], ['euler', 'Euler'], ['euler_a', 'Euler ancestral'], ['dpmpp_2m_karras', 'DPM++ 2M Karras']];
const ASPECTS = { '1:1': [1, 1], '3:2': [3, 2], '2:3': [2, 3], '16:9': [16, 9], '9:16': [9, 16] };
let styles = [];
let models = [];
const chosen = new Set();
let lastSeed = null;
const jobs = new Map();

/** Size for an aspect ratio around the model's native side, in multiples of 8. */
function sizeFor(aspect, side) {
  const [w, h] = ASPECTS[aspect];
  const scale = Math.sqrt((side * side) / (w * h));
  const round8 = (v) => Math.max(64, Math.round((v * scale) / 8) * 8);
  return [round8(w), round8(h)];
}

function currentModel() {
  return models.find((m) => m.id === $('gen-model').value) || null;
}

function applyDefaults(model) {
  if (!model) return;
  const d = model.defaults;
  $('gen-width').value = d.width;
  $('gen-height').value = d.height;
  $('gen-aspect').value = d.width === d.height ? '1:1' : 'custom';
  $('gen-steps').value = d.steps;
  $('gen-guidance').value = d.guidance;
  $('gen-scheduler').value = d.scheduler;
}

function renderModels() {
  const installed = models.filter((m) => m.installed);
  $('gen-model').replaceChildren(...models.map((m) => el('option', {
    value: m.id,
    disabled: !m.installed,
  }, m.installed ? m.name : `${m.name} (not downloaded, about ${(m.approx_bytes / 1e9).toFixed(1)} GB)`)));
  const hint = $('gen-model-hint');
  hint.hidden = installed.length > 0;
  const suggested = models.find((m) => !m.installed && m.approx_bytes);
  $('gen-model-hint-text').textContent = 'No model is installed yet. Download one to generate on this computer '
    + '(it is checked and can be resumed if interrupted), or import a diffusers folder with `selfdiffusion-cli models import`.';
  $('model-download').hidden = !suggested;
  if (suggested) {
    $('model-download').textContent = `Download ${suggested.name} (about ${(suggested.approx_bytes / 1e9).toFixed(1)} GB)`;
    $('model-download').dataset.modelId = suggested.id;
  }
  if (installed.length) {
    $('gen-model').value = installed[0].id;
    applyDefaults(installed[0]);
  }
}

function renderChosen() {
  $('style-chosen').replaceChildren(...[...chosen].map((name) => {
    const chip = el('button', { className: 'chip', title: `Remove ${name}`, dataset: { style: name } }, `${name} ×`);
    chip.addEventListener('click', () => {
      chosen.delete(name);
      renderStyles();
      refreshFinal();
    });
    return chip;
  }));
}

function renderStyles() {
  renderChosen();
  const q = $('style-search').value.trim().toLowerCase();
  const shown = styles.filter((s) => !q || `${s.name} ${s.category} ${s.description}`.toLowerCase().includes(q));
  $('style-list').replaceChildren(...shown.map((s) => {
    const box = el('input', { type: 'checkbox', checked: chosen.has(s.name), value: s.name });
    box.addEventListener('change', () => {
      if (box.checked) chosen.add(s.name); else chosen.delete(s.name);
      renderChosen();
      refreshFinal();
    });
    return el('label', { className: 'style', title: s.description, dataset: { style: s.name } }, box, ` ${s.name}`,
      el('span', { className: 'muted' }, ` · ${s.category}`));
  }));
}

let finalTimer;
function refreshFinal() {
  clearTimeout(finalTimer);
  finalTimer = setTimeout(async () => {
    const [prompt] = await api.previewPrompt($('gen-prompt').value, $('gen-negative').value, [...chosen]);
    $('gen-final').textContent = prompt || '(empty)';
    validate(prompt);
  }, 120);
}

/** Inline validation; returns the first problem or null and enables Generate accordingly. */
function validate(finalPrompt = $('gen-final').textContent) {
  const n = (id) => Number($(id).value);
  const problems = [];
  if (!finalPrompt || finalPrompt === '(empty)') problems.push('Write a prompt or pick a style that fills it.');
  const cloud = isCloud();
  if (!cloud && !currentModel()?.installed) problems.push('Pick an installed model.');
  for (const [id, label] of [['gen-width', 'Width'], ['gen-height', 'Height']]) {
    const v = n(id);
    if (!Number.isInteger(v) || v % 8 || v < 64 || v > 2048) problems.push(`${label} must be a multiple of 8 between 64 and 2048.`);
  }
  if (!Number.isInteger(n('gen-steps')) || n('gen-steps') < 1 || n('gen-steps') > 150) problems.push('Steps must be between 1 and 150.');
  if (!(n('gen-guidance') >= 0)) problems.push('Guidance must be 0 or more.');
  const maxCount = cloud ? 4 : 16;
  if (!Number.isInteger(n('gen-count')) || n('gen-count') < 1 || n('gen-count') > maxCount) {
    problems.push(`Count must be between 1 and ${maxCount}${cloud ? ' in the cloud' : ''}.`);
  }
  const seed = $('gen-seed').value;
  if (seed !== '' && (!Number.isInteger(Number(seed)) || Number(seed) < 0)) problems.push('The seed must be a whole number, 0 or more.');
  $('gen-error').textContent = problems[0] || '';
  $('gen-submit').disabled = problems.length > 0 || !currentProject();
  return problems[0] || null;
}

const isCloud = () => $('gen-backend').value === 'cloud';

/** The model and scheduler are the server's in the cloud. */
function onBackendChanged() {
  const cloud = isCloud();
  $('gen-model').disabled = cloud;
  $('gen-scheduler').disabled = cloud;
  $('gen-model').title = cloud ? 'The cloud server runs its own model' : '';
  validate();
}

/** Enables the Cloud backend while signed in; falls back to Local on sign-out. */
function onAccountChanged(status) {
  const option = $('gen-backend').querySelector('option[value="cloud"]');
  option.disabled = !status.username;
  option.textContent = status.username ? `Cloud (${status.username})` : 'Cloud (log in first)';
  if (!status.username && isCloud()) $('gen-backend').value = 'local';
  onBackendChanged();
}

async function submit() {
  if (validate()) return;
  const seedText = $('gen-seed').value;
  const common = {
    project_id: state.currentId,
    prompt: $('gen-prompt').value,
    negative_prompt: $('gen-negative').value,
    styles: [...chosen],
    steps: Number($('gen-steps').value),
    guidance: Number($('gen-guidance').value),
    seed: seedText === '' ? null : Number(seedText),
    width: Number($('gen-width').value),
    height: Number($('gen-height').value),
    count: Number($('gen-count').value),
  };
  try {
    const job = isCloud()
      ? await api.submitCloudJob(common)
      : await api.submitJob({ ...common, model_id: $('gen-model').value, scheduler: $('gen-scheduler').value || null });
    lastSeed = job.seed;
    $('gen-last-seed').disabled = false;
  } catch (e) {
    $('gen-error').textContent = String(e);
  }
}

const jobKey = (j) => `${j.backend || 'local'}:${j.id}`;

function renderJobs() {
  const items = [...jobs.values()].reverse().map((j) => {
    const backend = j.backend || 'local';
    const actions = [];
    if (j.state === 'queued' || j.state === 'running') {
      const label = backend === 'cloud' ? 'Stop following' : 'Cancel';
      const cancel = el('button', { className: 'link-button', dataset: { action: 'cancel' } }, label);
      cancel.addEventListener('click', () => api.cancelJob(j.id, backend).catch((e) => toast(e, 'error')));
      actions.push(cancel);
    }
    if (backend === 'local' && j.state === 'running' && j.count > 1) {
      const stop = el('button', { className: 'link-button', dataset: { action: 'stop' } }, 'Stop after this image');
      stop.addEventListener('click', () => api.stopJob(j.id).catch((e) => toast(e, 'error')));
      actions.push(stop);
    }
    let detail = j.state === 'failed' ? `failed: ${j.error}` : `${j.state} · ${j.images.length}/${j.count}`;
    let activity = null;
    if (backend === 'cloud') {
      detail = `☁ ${detail}`;
      if (j.state === 'queued' || j.state === 'running') {
        activity = j.progress == null
          ? el('span', { className: 'spinner', role: 'progressbar', 'aria-label': 'Waiting for the cloud' })
          : el('progress', { max: 1, value: j.progress, title: `${Math.round(j.progress * 100)} %` });
      }
    }
    return el('li', { className: `job ${j.state}`, dataset: { jobId: String(j.id), backend, state: j.state } },
      el('span', { className: 'job-prompt', title: j.prompt }, j.prompt), el('span', { className: 'muted' }, detail), activity, ...actions);
  });
  $('job-list').replaceChildren(...items);
}

function onJobChanged(job) {
  const before = jobs.get(jobKey(job));
  jobs.set(jobKey(job), job);
  renderJobs();
  if (!before || before.images.length !== job.images.length) {
    if (job.project_id === state.currentId) emit('gallery-reload');
    emit('images-changed');
  }
  if (job.state !== 'running' && job.state !== 'queued') {
    const running = [...jobs.values()].some((j) => j.state === 'running' && (j.backend || 'local') === 'local');
    if (!running) $('gen-progress').hidden = true;
    if (job.state === 'failed' && before?.state !== 'failed') toast(`Generation failed: ${job.error}`, 'error');
  }
}

function onProgress(p) {
  const box = $('gen-progress');
  box.hidden = false;
  const phases = { loading_model: 'Loading model', encoding_prompt: 'Encoding prompt', denoising: 'Denoising', decoding: 'Decoding' };
  $('gen-phase').textContent = `${phases[p.phase] || p.phase} · image ${p.image + 1}/${p.images} · step ${p.step}/${p.steps}`;
  $('gen-eta').textContent = p.eta_s == null ? '' : `about ${Math.ceil(p.eta_s)} s left`;
  const total = p.images * p.steps;
  $('gen-bar').max = Math.max(total, 1);
  $('gen-bar').value = p.image * p.steps + p.step;
  box.dataset.step = String(p.image * p.steps + p.step);
  box.dataset.jobId = String(p.id);
  if (p.preview) {
    $('gen-preview').src = p.preview;
    $('gen-preview').hidden = false;
  }
}

async function downloadModel() {
  const id = $('model-download').dataset.modelId;
  $('model-download').disabled = true;
  $('model-download-progress').hidden = false;
  try {
    models = await api.downloadModel(id);
    renderModels();
    toast('Model ready');
  } catch (e) {
    toast(e, 'error');
  } finally {
    $('model-download').disabled = false;
    $('model-download-progress').hidden = true;
    validate();
  }
}

function onDownloadProgress(p) {
  $('model-download-bar').max = Math.max(p.bytes_total, 1);
  $('model-download-bar').value = p.bytes_done;
  $('model-download-text').textContent = `${(p.bytes_done / 1e6).toFixed(1)} of ${(p.bytes_total / 1e6).toFixed(1)} MB · ${p.file}`;
}

/** Fills the form from an image's recipe ("reuse parameters"), seed included. */
export function reuseRecipe(recipe) {
  $('gen-prompt').value = recipe.user_prompt ?? recipe.prompt ?? '';
  $('gen-negative').value = recipe.user_negative_prompt ?? (recipe.user_prompt === undefined ? recipe.negative_prompt ?? '' : '');
  chosen.clear();
  for (const s of recipe.styles || []) if (styles.some((x) => x.name === s)) chosen.add(s);
  if (recipe.model && models.some((m) => m.id === recipe.model && m.installed)) $('gen-model').value = recipe.model;
  if (recipe.width) $('gen-width').value = recipe.width;
  if (recipe.height) $('gen-height').value = recipe.height;
  $('gen-aspect').value = 'custom';
  if (recipe.steps) $('gen-steps').value = recipe.steps;
  if (recipe.guidance !== undefined) $('gen-guidance').value = recipe.guidance;
  $('gen-seed').value = recipe.seed ?? '';
  $('gen-count').value = 1;
  if (recipe.scheduler && SCHEDULERS.some(([v]) => v === recipe.scheduler)) $('gen-scheduler').value = recipe.scheduler;
  renderStyles();
  refreshFinal();
}

/** Wires the panel and loads styles, models and jobs. */
export async function initGenerate() {
  $('gen-scheduler').replaceChildren(...SCHEDULERS.map(([v, label]) => el('option', { value: v }, label)));
  const styleList = await api.listStyles();
  styles = styleList.styles;
  for (const p of styleList.problems) toast(`Style “${p.name}” skipped: ${p.reason}`, 'error');
  models = await api.listModels();
  renderModels();
  renderStyles();
  $('style-search').addEventListener('input', renderStyles);
  for (const id of ['gen-prompt', 'gen-negative']) $(id).addEventListener('input', refreshFinal);
  for (const id of ['gen-width', 'gen-height', 'gen-steps', 'gen-guidance', 'gen-count', 'gen-seed']) {
    $(id).addEventListener('input', () => validate());
  }
  $('gen-model').addEventListener('change', () => { applyDefaults(currentModel()); validate(); });
  $('gen-aspect').addEventListener('change', () => {
    const aspect = $('gen-aspect').value;
    if (aspect === 'custom') return;
    const side = currentModel()?.defaults.width || 512;
    const [w, h] = sizeFor(aspect, side);
    $('gen-width').value = w;
    $('gen-height').value = h;
    validate();
  });
  $('gen-random-seed').addEventListener('click', () => { $('gen-seed').value = ''; validate(); });
  $('gen-last-seed').addEventListener('click', () => { if (lastSeed !== null) $('gen-seed').value = lastSeed; validate(); });
  $('gen-submit').addEventListener('click', submit);
  $('model-download').addEventListener('click', downloadModel);
  $('model-download-cancel').addEventListener('click', () => api.cancelModelDownload());
  await listen('model-download-progress', (e) => onDownloadProgress(e.payload));
  await listen('job-changed', (e) => onJobChanged(e.payload));
  await listen('job-progress', (e) => onProgress(e.payload));
  for (const j of await api.listJobs()) jobs.set(jobKey(j), j);
  renderJobs();
  on('project-changed', () => validate());
  on('account-changed', onAccountChanged);
  if (state.account) onAccountChanged(state.account);
  $('gen-backend').addEventListener('change', onBackendChanged);
  refreshFinal();
}
