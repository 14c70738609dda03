// @ts-check
// The Create screen: prompt, styles, a LoRA picker and parameters on the left; the current image
// large in the middle (the live preview while a job runs, the result when done) with its actions;
// the recent results in a strip below; the job list on the right. Ctrl/Cmd+Enter generates, Esc
// cancels the running job.
import { api, fileUrl, listen, listenDrag, toCommandError } from '../api.js';
import { APP_EVENTS, DRAG_EVENTS, TAURI_EVENTS, emit, on } from '../events.js';
import { byId, el, formatEta, formatGigabytes, modalOpen, scoped, toast } from '../dom.js';
import {
  state, currentProject, selectProject, loadProjects, loadCloudLimits, downloadModel, cancelDownload,
  isActive, setAccount, loadModels, FAMILY_LABELS,
} from '../store.js';
import { createParamForm } from '../components/param-form.js';
import { openViewer } from '../components/viewer.js';
import { projectDialog } from '../components/project-dialog.js';
import { createImageInput } from '../components/image-input.js';

/** @typedef {import('../types.js').Style} Style */
/** @typedef {import('../types.js').Job} Job */
/** @typedef {import('../types.js').JobProgress} JobProgress */
/** @typedef {import('../types.js').ImageDetail} ImageDetail */
/** @typedef {import('../types.js').ImageSummary} ImageSummary */
/** @typedef {import('../types.js').Recipe} Recipe */
/** @typedef {import('../types.js').ModelEntry} ModelEntry */
/** @typedef {import('../types.js').Limits} Limits */

/** How many recent results the strip shows (a display choice, not a limit). */
const RECENT = 24;

const PHASES = /** @type {Record<string, string>} */ ({
  loading_model: 'Loading model', encoding_prompt: 'Encoding prompt', denoising: 'Denoising', decoding: 'Decoding',
});

/**
 * What the Create screen shows and remembers.
 * @typedef {object} CreateView
 * @property {Style[]} styles every style, built-in and user
 * @property {Set<string>} chosen names of the picked styles, in pick order
 * @property {string} finalPrompt the prompt that would be sent, styles applied
 * @property {ImageDetail | null} current the image on the stage
 * @property {ImageSummary[]} recent the strip, newest first
 * @property {JobProgress | null} progress the running local job's last report
 * @property {string | null} previewUrl its latest preview
 * @property {boolean} submitting
 * @property {number} previewRequest sequence of prompt previews (the last one wins)
 * @property {boolean} hasDefaults whether the form was ever filled with a model's defaults
 * @property {string | null} cloudProblem why the cloud's limits could not be had
 */

/** @type {CreateView} */
const view = {
  styles: [],
  chosen: new Set(),
  finalPrompt: '',
  current: null,
  recent: [],
  progress: null,
  previewUrl: null,
  submitting: false,
  previewRequest: 0,
  hasDefaults: false,
  cloudProblem: null,
};

const root = byId('screen-create');
const { q } = scoped(root);
const prompt = q('#create-prompt', HTMLTextAreaElement);
const negative = q('#create-negative', HTMLTextAreaElement);
const backend = q('#create-backend', HTMLSelectElement);
const modelSelect = q('#create-model', HTMLSelectElement);
const projectSelect = q('#create-project', HTMLSelectElement);
const submitButton = q('#create-submit', HTMLButtonElement);
const loraSelect = q('#create-lora', HTMLSelectElement);
const loraWeight = q('#create-lora-weight', HTMLInputElement);
const loraAdd = q('#create-lora-add', HTMLButtonElement);
const form = createParamForm(q('#create-params'), () => validate());
const imageInput = createImageInput(q('#create-input'), (sizeChanged) => {
  if (sizeChanged) fitSizeToInput();
  validate();
});

/** Image files a drop on Create can start from. */
const IMAGE_FILE = /\.(png|jpe?g|webp)$/i;

/**
 * The form's size for the image to start from: its own (with any outpaint margins), scaled down
 * to fit the limits and rounded down to the size step, as diffusers rounds it.
 */
function fitSizeToInput() {
  const size = imageInput.size();
  const limits = activeLimits();
  if (!size || !limits) return;
  let [w, h] = size;
  const scale = Math.min(1, limits.max_side / Math.max(w, h));
  const fit = (/** @type {number} */ v) => Math.max(limits.min_side, Math.floor((v * scale) / limits.side_step) * limits.side_step);
  w = fit(w);
  h = fit(h);
  const now = form.values();
  if (now.width !== w || now.height !== h) form.setSize(w, h);
}

const isCloud = () => backend.value === 'cloud';

/** @returns {ModelEntry | null} */
function currentModel() {
  return state.models.find((m) => m.id === modelSelect.value && m.installed) || null;
}

/** The limits that bound the form now. @returns {Limits | null} */
function activeLimits() {
  if (isCloud()) return state.cloudLimits;
  return currentModel()?.limits ?? state.engineLimits;
}

// --- project ----------------------------------------------------------------------------------

function renderProjects() {
  projectSelect.replaceChildren(...state.projects.map((p) => el('option', { value: String(p.id) }, p.name)));
  if (!state.projects.length) projectSelect.append(el('option', { value: '' }, 'No project yet'));
  projectSelect.value = state.currentProjectId === null ? '' : String(state.currentProjectId);
  projectSelect.disabled = !state.projects.length;
}

async function newProject() {
  const project = await projectDialog(null);
  if (!project) return;
  try {
    await loadProjects(project.id);
    toast(`Created “${project.name}”`);
  } catch (e) { toast(e, 'error'); }
}

// --- styles and prompt ------------------------------------------------------------------------

function renderChosen() {
  q('#create-style-chosen').replaceChildren(...[...view.chosen].map((name) => {
    const chip = el('button', { type: 'button', className: 'chip', title: `Remove ${name}`, dataset: { style: name } }, `${name} ×`);
    chip.addEventListener('click', () => {
      view.chosen.delete(name);
      renderStyles();
      refreshFinal();
    });
    return chip;
  }));
  q('#create-style-count').textContent = view.chosen.size ? `(${view.chosen.size})` : '';
}

function renderStyles() {
  renderChosen();
  const query = q('#create-style-search', HTMLInputElement).value.trim().toLowerCase();
  const shown = view.styles.filter((s) => !query || `${s.name} ${s.category} ${s.description}`.toLowerCase().includes(query));
  q('#create-style-list').replaceChildren(...shown.map((s) => {
    const box = el('input', { type: 'checkbox', checked: view.chosen.has(s.name), value: s.name });
    box.addEventListener('change', () => {
      if (box.checked) view.chosen.add(s.name); else view.chosen.delete(s.name);
      renderChosen();
      refreshFinal();
    });
    return el('label', { className: 'style', title: s.description, dataset: { style: s.name } }, box, ` ${s.name}`,
      el('span', { className: 'muted' }, ` · ${s.category}`));
  }));
}

/** @type {ReturnType<typeof setTimeout> | undefined} */
let finalTimer;
/** Asks the core for the prompt that would be sent (styles applied), then validates. */
function refreshFinal() {
  clearTimeout(finalTimer);
  finalTimer = setTimeout(async () => {
    const mine = ++view.previewRequest;
    try {
      const [sent] = await api.previewPrompt(prompt.value, negative.value, [...view.chosen]);
      if (mine !== view.previewRequest) return;
      view.finalPrompt = sent;
      q('#create-final').textContent = sent || '(empty)';
    } catch (e) {
      if (mine === view.previewRequest) q('#create-final').textContent = toCommandError(e).message;
    }
    validate();
  }, 120);
}

// --- LoRAs ------------------------------------------------------------------------------------

/**
 * Matches the `<lora:name:…>` tag of one LoRA in a prompt (AUTOMATIC1111's syntax).
 * @param {string} name
 */
function loraTag(name) {
  const literal = name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return new RegExp(`<lora:${literal}(?::[^>]*)?>`);
}

/**
 * A weight as the tag writes it: at most four decimals, no trailing zeros (0.7, -0.4, 1).
 * @param {number} weight
 */
const formatWeight = (weight) => String(Number(weight.toFixed(4)));

/**
 * The prompt with `<lora:name:weight>`: the LoRA's tag replaced when it has one, else appended.
 * @param {string} text
 * @param {string} name
 * @param {number} weight
 */
function withLora(text, name, weight) {
  const tag = `<lora:${name}:${formatWeight(weight)}>`;
  const re = loraTag(name);
  if (re.test(text)) return text.replace(re, tag);
  const base = text.trimEnd();
  return base ? `${base} ${tag}` : tag;
}

function renderLoras() {
  const before = loraSelect.value;
  const loras = state.loras;
  // A LoRA of another family than the model's is named so; it would fail the job.
  const family = isCloud() ? null : currentModel()?.facts?.family ?? null;
  loraSelect.replaceChildren(...(loras.length
    ? loras.map((l) => el('option', { value: l.name },
      l.family && family && l.family !== family ? `${l.name} (for ${FAMILY_LABELS[l.family]})` : l.name))
    : [el('option', { value: '' }, 'None yet (Models screen)')]));
  if (loras.some((l) => l.name === before)) loraSelect.value = before;
  for (const node of [loraSelect, loraWeight, loraAdd]) node.disabled = !loras.length;
  loraSelect.title = loras.length ? '' : 'Import LoRAs on the Models screen';
}

/** Adds the picked LoRA to the prompt as `<lora:name:weight>`, as if typed. */
function addLora() {
  const name = loraSelect.value;
  if (!name) return;
  const weight = Number(loraWeight.value);
  if (loraWeight.value.trim() === '' || !Number.isFinite(weight)) {
    loraWeight.setAttribute('aria-invalid', 'true');
    loraWeight.focus();
    return;
  }
  loraWeight.removeAttribute('aria-invalid');
  prompt.value = withLora(prompt.value, name, weight);
  prompt.dispatchEvent(new Event('input', { bubbles: true }));
}

// --- model and backend ------------------------------------------------------------------------

function renderModels() {
  const before = modelSelect.value;
  modelSelect.replaceChildren(...state.models.map((m) => el('option', { value: m.id, disabled: !m.installed },
    m.installed ? m.name : `${m.name} (not downloaded${m.approx_bytes ? `, about ${formatGigabytes(m.approx_bytes)}` : ''})`)));
  const installed = state.models.filter((m) => m.installed);
  const keep = installed.find((m) => m.id === before);
  const pick = keep || installed[0];
  if (pick) {
    modelSelect.value = pick.id;
    if (!keep) form.setDefaults(pick.defaults);
    view.hasDefaults = true;
  } else if (state.models[0]) {
    // Nothing installed yet: name the default model and show its parameters meanwhile.
    modelSelect.value = state.models[0].id;
    if (!view.hasDefaults) form.setDefaults(state.models[0].defaults);
    view.hasDefaults = true;
  }
  renderModelHint();
  applyLimits();
}

function renderModelHint() {
  const installed = state.models.some((m) => m.installed);
  const hint = q('#create-model-hint');
  hint.hidden = installed || isCloud();
  const suggested = state.models.find((m) => !m.installed && m.approx_bytes);
  const button = q('#create-model-download', HTMLButtonElement);
  button.hidden = !suggested;
  const d = state.download;
  if (suggested && suggested.approx_bytes) {
    button.dataset.modelId = suggested.id;
    button.textContent = d.error && d.id === suggested.id
      ? `Resume the download of ${suggested.name}`
      : `Download ${suggested.name} (about ${formatGigabytes(suggested.approx_bytes)})`;
  }
  button.disabled = d.running;
  q('#create-download-progress').hidden = !d.running;
  if (d.running && d.progress) {
    const bar = q('#create-download-bar', HTMLProgressElement);
    bar.max = Math.max(d.progress.bytes_total, 1);
    bar.value = d.progress.bytes_done;
    q('#create-download-text').textContent = `${(d.progress.bytes_done / 1e6).toFixed(1)} of ${(d.progress.bytes_total / 1e6).toFixed(1)} MB`;
  }
  q('#create-download-error').textContent = !d.running && d.error && d.errorKind !== 'cancelled' ? d.error : '';
}

function applyLimits() {
  form.setXl(!isCloud() && currentModel()?.facts?.family === 'sdxl');
  renderLoras();
  form.setLimits(activeLimits());
  validate();
}

/** The model and scheduler are the server's in the cloud; its limits apply. */
async function onBackendChanged() {
  const cloud = isCloud();
  state.backend = cloud ? 'cloud' : 'local';
  modelSelect.disabled = cloud;
  modelSelect.title = cloud ? 'The cloud server runs its own model' : '';
  form.setSchedulerEnabled(!cloud);
  renderModelHint();
  view.cloudProblem = null;
  applyLimits();
  if (!cloud) return;
  try {
    await loadCloudLimits();
  } catch (e) {
    const err = toCommandError(e);
    if (err.kind === 'unauthorized') api.accountStatus().then(setAccount).catch(() => {});
    view.cloudProblem = err.message;
  }
  if (isCloud()) applyLimits();
}

/** Enables the Cloud backend while signed in; falls back to Local on sign-out. */
function onAccountChanged() {
  const username = state.account?.username;
  const option = q('#create-backend option[value="cloud"]', HTMLOptionElement);
  option.disabled = !username;
  option.textContent = username ? `Cloud (${username})` : 'Cloud (log in first)';
  if (!username && isCloud()) backend.value = 'local';
  onBackendChanged();
}

// --- validation and submit --------------------------------------------------------------------

/** Shows the first problem and enables Generate when there is none; returns it. */
function validate() {
  /** @type {string[]} */
  const problems = [];
  if (!currentProject()) problems.push('Choose or create a project first.');
  if (!view.finalPrompt) problems.push('Write a prompt or pick a style that fills it.');
  const limits = activeLimits();
  const maxChars = limits?.max_prompt_chars;
  if (maxChars) {
    for (const [label, text] of [['The prompt', prompt.value], ['The negative prompt', negative.value]]) {
      if (text.length > maxChars) problems.push(`${label} is ${text.length} characters long; at most ${maxChars} are allowed.`);
    }
  }
  if (!isCloud() && !currentModel()) problems.push('Pick an installed model.');
  if (isCloud() && !state.cloudLimits) problems.push(view.cloudProblem || 'Asking the cloud service for its limits…');
  problems.push(...form.problems({ cloud: isCloud() }));
  const inputProblem = imageInput.problem();
  if (inputProblem) problems.push(inputProblem);
  q('#create-error').textContent = problems[0] || '';
  submitButton.disabled = problems.length > 0 || view.submitting;
  return problems[0] || null;
}

async function submit() {
  if (view.submitting || validate()) return;
  const project = currentProject();
  if (!project) return;
  const v = form.values();
  const common = {
    project_id: project.id,
    prompt: prompt.value,
    negative_prompt: negative.value,
    styles: [...view.chosen],
    steps: v.steps,
    guidance: v.guidance,
    seed: v.seed,
    width: v.width,
    height: v.height,
    count: v.count,
    init: imageInput.params(),
    hires: v.hires,
  };
  view.submitting = true;
  submitButton.disabled = true;
  try {
    const job = isCloud()
      ? await api.submitCloudJob(common)
      : await api.submitJob({
        ...common, model_id: modelSelect.value, scheduler: v.scheduler, size_conditions: v.size_conditions,
      });
    form.setLastSeed(job.seed);
  } catch (e) {
    const err = toCommandError(e);
    if (err.kind === 'unauthorized') api.accountStatus().then(setAccount).catch(() => {});
    if (err.kind === 'not_installed') loadModels().catch(() => {});
    view.submitting = false;
    validate();
    q('#create-error').textContent = err.message;
    return;
  }
  view.submitting = false;
  validate();
}

/**
 * Fills the form from an image's recipe ("reuse parameters"): the user's own prompt, the same
 * styles, model, size, steps, guidance, scheduler and seed, so the same file can be made again.
 * @param {Recipe} recipe
 */
function reuseRecipe(recipe) {
  let text = recipe.user_prompt ?? recipe.prompt ?? '';
  // The LoRAs it was made with, as tags (unless the words kept them).
  for (const l of recipe.loras || []) if (!loraTag(l.name).test(text)) text = withLora(text, l.name, l.weight);
  prompt.value = text;
  negative.value = recipe.user_negative_prompt ?? (recipe.user_prompt === undefined ? recipe.negative_prompt ?? '' : '');
  view.chosen.clear();
  for (const s of recipe.styles || []) if (view.styles.some((x) => x.name === s)) view.chosen.add(s);
  if (recipe.model && state.models.some((m) => m.id === recipe.model && m.installed)) {
    modelSelect.value = recipe.model;
    applyLimits();
  }
  form.fill(recipe);
  renderStyles();
  refreshFinal();
  // The image it started from, its mask and strength (or none); the size stays the recipe's.
  imageInput.restore(recipe.source ?? null).then(() => { form.fill(recipe); validate(); });
}

// --- the stage, the strip and the jobs --------------------------------------------------------

/** The local job running now, if any. */
function runningLocal() {
  return [...state.jobs.values()].find((j) => (j.backend || 'local') === 'local' && j.state === 'running') || null;
}

/** The newest active cloud job of the current project, if any. */
function activeCloud() {
  return [...state.jobs.values()].reverse()
    .find((j) => j.backend === 'cloud' && isActive(j) && j.project_id === state.currentProjectId) || null;
}

function renderStage() {
  const stage = q('#create-stage');
  const img = q('#create-image', HTMLImageElement);
  const local = runningLocal();
  const progress = local && view.progress && view.progress.id === local.id ? view.progress : null;
  const cloud = progress ? null : activeCloud();
  let mode = 'empty';
  if (progress && view.previewUrl) {
    mode = 'preview';
    img.src = view.previewUrl;
    img.alt = 'Preview of the image being generated';
  } else if (view.current) {
    mode = 'image';
    const src = fileUrl(view.current.file);
    if (img.getAttribute('src') !== src) img.src = src;
    img.alt = view.current.recipe.prompt || view.current.original_name;
  } else {
    img.removeAttribute('src');
  }
  stage.dataset.mode = mode;
  img.hidden = mode === 'empty';
  q('#create-stage-empty').hidden = mode !== 'empty' || Boolean(progress || cloud);

  const box = q('#create-progress');
  const bar = q('#create-bar', HTMLProgressElement);
  box.hidden = !progress && !cloud;
  if (progress) {
    const phase = PHASES[progress.phase] || progress.phase;
    q('#create-phase').textContent = progress.phase === 'loading_model' || progress.phase === 'encoding_prompt'
      ? phase
      : `${phase} · image ${progress.image + 1}/${progress.images} · step ${progress.step}/${progress.steps}`;
    q('#create-eta').textContent = formatEta(progress.eta_s);
    bar.max = Math.max(progress.images * progress.steps, 1);
    bar.value = progress.image * progress.steps + progress.step;
    box.dataset.jobId = String(progress.id);
    box.dataset.step = String(progress.image * progress.steps + progress.step);
  } else if (cloud) {
    q('#create-phase').textContent = `Generating in the cloud · ${cloud.images.length}/${cloud.count}`;
    q('#create-eta').textContent = '';
    bar.max = 1;
    if (cloud.progress === null || cloud.progress === undefined) bar.removeAttribute('value');
    else bar.value = cloud.progress;
    box.dataset.jobId = String(cloud.id);
  }
  q('#create-spinner').hidden = !cloud;

  const current = view.current;
  for (const id of ['#create-favorite', '#create-reuse', '#create-open', '#create-use-input']) q(id, HTMLButtonElement).disabled = !current;
  q('#create-favorite').textContent = current?.favorite ? '★ Favorite' : '☆ Favorite';
  q('#create-favorite').setAttribute('aria-pressed', String(Boolean(current?.favorite)));
  q('#create-caption').textContent = current
    ? `${current.recipe.user_prompt || current.recipe.prompt || current.original_name} · ${current.width}×${current.height}${current.recipe.seed !== undefined && current.recipe.seed !== null ? ` · seed ${current.recipe.seed}` : ''}`
    : '';
  q('#create-caption').title = current?.recipe.prompt || '';
}

function renderStrip() {
  q('#create-strip').replaceChildren(...view.recent.map((image) => {
    const button = el('button', {
      type: 'button', className: 'thumb', title: image.prompt || image.original_name, dataset: { imageId: String(image.id) },
    }, el('img', { src: fileUrl(image.thumb), alt: image.prompt || image.original_name, loading: 'lazy', decoding: 'async' }));
    button.classList.toggle('current', view.current?.id === image.id);
    button.addEventListener('click', () => showImage(image.id));
    button.addEventListener('dblclick', () => openViewer(image.id, neighbour));
    return el('li', {}, button);
  }));
  q('#create-strip-empty').hidden = view.recent.length > 0;
}

/** @type {import('../components/viewer.js').Neighbour} */
function neighbour(id, step) {
  const ids = view.recent.map((i) => i.id);
  const at = ids.indexOf(id);
  if (at < 0) return null;
  return ids[at + step] ?? null;
}

/**
 * Puts an image of the strip on the stage.
 * @param {number} id
 */
async function showImage(id) {
  try {
    view.current = await api.getImage(id);
  } catch (e) {
    toast(e, 'error');
    return;
  }
  view.previewUrl = null;
  renderStage();
  renderStrip();
}

/** Loads the current project's recent images and shows the newest. */
async function loadRecent() {
  const projectId = state.currentProjectId;
  if (projectId === null) {
    view.recent = [];
    view.current = null;
  } else {
    try {
      const page = await api.listImages(projectId, { search: null, favorites_only: false, cursor: null, limit: RECENT });
      if (projectId !== state.currentProjectId) return;
      view.recent = page.images;
      const keep = view.current && view.recent.some((i) => i.id === view.current?.id) ? view.current : null;
      view.current = keep || (view.recent[0] ? await api.getImage(view.recent[0].id) : null);
    } catch (e) {
      toast(e, 'error');
    }
  }
  renderStage();
  renderStrip();
}

/**
 * @param {Job} job
 */
function jobItem(job) {
  const backendName = job.backend || 'local';
  const actions = [];
  if (isActive(job)) {
    const label = backendName === 'cloud' ? 'Stop following' : 'Cancel';
    const cancel = el('button', { type: 'button', className: 'link-button', dataset: { action: 'cancel' } }, label);
    cancel.addEventListener('click', () => api.cancelJob(job.id, backendName).catch((e) => toast(e, 'error')));
    actions.push(cancel);
  }
  if (backendName === 'local' && job.state === 'running' && job.count > 1) {
    const stop = el('button', { type: 'button', className: 'link-button', dataset: { action: 'stop' } }, 'Stop after this image');
    stop.addEventListener('click', () => api.stopJob(job.id).catch((e) => toast(e, 'error')));
    actions.push(stop);
  }
  const detail = job.state === 'failed' ? `failed: ${job.error || ''}` : `${job.state} · ${job.images.length}/${job.count}`;
  let activity = null;
  if (backendName === 'cloud' && isActive(job)) {
    activity = job.progress === null || job.progress === undefined
      ? el('span', { className: 'spinner', role: 'progressbar', ariaLabel: 'Waiting for the cloud' })
      : el('progress', { max: 1, value: job.progress, title: `${Math.round(job.progress * 100)} %` });
  }
  const project = job.project_id !== state.currentProjectId
    ? state.projects.find((p) => p.id === job.project_id)?.name : null;
  const words = job.user_prompt || job.prompt || '(styles only)';
  return el('li', { className: `job ${job.state}`, dataset: { jobId: String(job.id), backend: backendName, state: job.state } },
    el('span', { className: 'job-prompt', title: job.prompt }, words),
    el('span', { className: 'muted job-detail' }, `${backendName === 'cloud' ? '☁ ' : ''}${detail}${project ? ` · ${project}` : ''}`),
    activity, ...actions);
}

function renderJobs() {
  const jobs = [...state.jobs.values()].reverse();
  q('#create-jobs').replaceChildren(...jobs.map(jobItem));
  q('#create-jobs-empty').hidden = jobs.length > 0;
}

/** @param {{ job: Job, previous: Job | null }} change */
function onJobUpdated({ job, previous }) {
  renderJobs();
  if (!isActive(job)) {
    if (view.progress?.id === job.id && (job.backend || 'local') === 'local') {
      view.progress = null;
      view.previewUrl = null;
    }
    if (job.state === 'failed' && previous?.state !== 'failed') toast(`Generation failed: ${job.error || ''}`, 'error');
  }
  renderStage();
}

/** @param {JobProgress} p */
function onProgress(p) {
  if (!view.progress || view.progress.id !== p.id || view.progress.image !== p.image) view.previewUrl = null;
  view.progress = p;
  if (p.preview) view.previewUrl = p.preview;
  renderStage();
}

/** @param {{ projectId: number, images: ImageDetail[] }} added */
function onImagesAdded({ projectId, images }) {
  if (projectId !== state.currentProjectId) return;
  const known = new Set(view.recent.map((i) => i.id));
  const fresh = images.filter((i) => !known.has(i.id));
  view.recent = [...fresh.reverse(), ...view.recent].slice(0, RECENT);
  view.current = images[images.length - 1];
  view.previewUrl = null;
  renderStage();
  renderStrip();
}

/** Cancels the running job (else the newest queued one). */
function cancelRunning() {
  const jobs = [...state.jobs.values()].reverse();
  const job = jobs.find((j) => j.state === 'running') || jobs.find((j) => j.state === 'queued');
  if (!job) return false;
  api.cancelJob(job.id, job.backend || 'local')
    .then(() => toast(job.backend === 'cloud' ? 'Stopped following the cloud job' : 'Job cancelled'))
    .catch((e) => toast(e, 'error'));
  return true;
}

/** @param {KeyboardEvent} e */
function onKey(e) {
  if (state.screen !== 'create' || modalOpen() || e.defaultPrevented) return;
  if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) {
    e.preventDefault();
    submit();
  } else if (e.key === 'Escape') {
    const target = e.target;
    if (target instanceof HTMLInputElement && target.type === 'search' && target.value) return;
    if (cancelRunning()) e.preventDefault();
  }
}

/** Wires the screen and loads styles; models, projects and jobs come from the store. */
export async function initCreate() {
  try {
    const list = await api.listStyles();
    view.styles = list.styles;
    const [first] = list.problems;
    if (first) toast(`Style “${first.name}” skipped: ${first.reason}${list.problems.length > 1 ? ` (and ${list.problems.length - 1} more)` : ''}`, 'error');
  } catch (e) { toast(e, 'error'); }
  renderStyles();
  q('#create-style-search').addEventListener('input', renderStyles);
  for (const node of [prompt, negative]) node.addEventListener('input', refreshFinal);
  loraAdd.addEventListener('click', addLora);
  loraWeight.addEventListener('input', () => loraWeight.removeAttribute('aria-invalid'));
  loraWeight.addEventListener('keydown', (e) => { if (e.key === 'Enter' && !e.ctrlKey && !e.metaKey) { e.preventDefault(); addLora(); } });
  modelSelect.addEventListener('change', () => {
    const model = currentModel();
    if (model) form.setDefaults(model.defaults);
    applyLimits();
  });
  backend.addEventListener('change', onBackendChanged);
  projectSelect.addEventListener('change', () => selectProject(projectSelect.value ? Number(projectSelect.value) : null));
  q('#create-new-project').addEventListener('click', newProject);
  submitButton.addEventListener('click', submit);
  q('#create-model-download').addEventListener('click', async () => {
    const id = q('#create-model-download').dataset.modelId;
    if (!id) return;
    const name = state.models.find((m) => m.id === id)?.name || id;
    if (await downloadModel(id)) toast(`${name} is ready`);
  });
  q('#create-download-cancel').addEventListener('click', () => { cancelDownload(); });
  q('#create-open-models').addEventListener('click', () => emit(APP_EVENTS.NAVIGATE, 'models'));
  const openCurrent = () => {
    if (view.current && q('#create-stage').dataset.mode === 'image') openViewer(view.current.id, neighbour);
  };
  q('#create-image').addEventListener('click', openCurrent);
  q('#create-image').addEventListener('keydown', (e) => { if (e.key === 'Enter' && !e.ctrlKey && !e.metaKey) openCurrent(); });
  q('#create-favorite').addEventListener('click', async () => {
    const image = view.current;
    if (!image) return;
    try {
      const now = await api.toggleFavorite(image.id);
      emit(APP_EVENTS.FAVORITE_CHANGED, { id: image.id, favorite: now });
    } catch (e) { toast(e, 'error'); }
  });
  q('#create-reuse').addEventListener('click', () => {
    if (view.current) { reuseRecipe(view.current.recipe); toast('Parameters copied into the form'); }
  });
  q('#create-use-input').addEventListener('click', () => {
    if (view.current) useAsInput(view.current.id);
  });
  q('#create-open').addEventListener('click', () => {
    if (!view.current) return;
    emit(APP_EVENTS.NAVIGATE, 'library');
    emit(APP_EVENTS.SHOW_IN_LIBRARY, { imageId: view.current.id, projectId: view.current.project_id });
  });
  q('#create-to-library').addEventListener('click', () => emit(APP_EVENTS.NAVIGATE, 'library'));
  document.addEventListener('keydown', onKey);

  on(APP_EVENTS.PROJECTS_CHANGED, () => { renderProjects(); renderJobs(); validate(); });
  on(APP_EVENTS.PROJECT_SELECTED, () => { renderProjects(); renderJobs(); loadRecent(); validate(); });
  on(APP_EVENTS.MODELS_CHANGED, renderModels);
  on(APP_EVENTS.LORAS_CHANGED, renderLoras);
  on(APP_EVENTS.MODEL_DOWNLOAD, renderModelHint);
  on(APP_EVENTS.ACCOUNT_CHANGED, onAccountChanged);
  on(APP_EVENTS.JOB_UPDATED, onJobUpdated);
  on(APP_EVENTS.IMAGES_ADDED, onImagesAdded);
  on(APP_EVENTS.IMAGES_RELOAD, ({ projectId }) => { if (projectId === null || projectId === state.currentProjectId) loadRecent(); });
  on(APP_EVENTS.FAVORITE_CHANGED, ({ id, favorite }) => {
    if (view.current?.id === id) { view.current.favorite = favorite; renderStage(); }
  });
  on(APP_EVENTS.REUSE_RECIPE, (recipe) => {
    reuseRecipe(recipe);
    emit(APP_EVENTS.NAVIGATE, 'create');
    prompt.focus();
    toast('Parameters copied into the form');
  });
  on(APP_EVENTS.SCREEN_SHOWN, (name) => { if (name === 'create') renderStage(); });
  on(APP_EVENTS.USE_AS_INPUT, ({ imageId }) => {
    emit(APP_EVENTS.NAVIGATE, 'create');
    useAsInput(imageId);
  });
  await listen(TAURI_EVENTS.JOB_PROGRESS, onProgress);
  // A file dropped on Create is the image to start from (elsewhere drops import).
  await listenDrag(DRAG_EVENTS.ENTER, () => { if (state.screen === 'create') root.classList.add('dropping'); });
  await listenDrag(DRAG_EVENTS.LEAVE, () => root.classList.remove('dropping'));
  await listenDrag(DRAG_EVENTS.DROP, (payload) => {
    root.classList.remove('dropping');
    if (state.screen !== 'create') return;
    const file = (payload.paths || []).find((p) => IMAGE_FILE.test(p));
    if (file) useAsInput(file);
    else if ((payload.paths || []).length) toast('Drop a PNG, JPEG or WebP image to start from it', 'error');
  });

  renderProjects();
  renderModels();
  renderLoras();
  if (state.account) onAccountChanged();
  renderJobs();
  await loadRecent();
  refreshFinal();
}

/**
 * Starts the next job from a library image (by id) or an image file (by path).
 * @param {number | string} source
 */
async function useAsInput(source) {
  const ok = await imageInput.choose(typeof source === 'number' ? { imageId: source } : { path: source });
  if (!ok) return;
  fitSizeToInput();
  validate();
  toast('The next image starts from this one: set the strength, paint a mask or outpaint');
}

/** Puts the caret in the prompt (first run: type at once). */
export function focusPrompt() {
  prompt.focus();
}
