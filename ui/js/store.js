// @ts-check
// The state the screens share, declared in one place, and the actions that change it. Each
// change is announced as a declared app event (events.js); screens keep their own view state.
import { api, listen, toCommandError } from './api.js';
import { APP_EVENTS, TAURI_EVENTS, emit } from './events.js';

/** @typedef {import('./types.js').ProjectSummary} ProjectSummary */
/** @typedef {import('./types.js').AccountStatus} AccountStatus */
/** @typedef {import('./types.js').ModelEntry} ModelEntry */
/** @typedef {import('./types.js').LoraEntry} LoraEntry */
/** @typedef {import('./types.js').Limits} Limits */
/** @typedef {import('./types.js').Job} Job */
/** @typedef {import('./types.js').ImageDetail} ImageDetail */
/** @typedef {import('./events.js').DownloadState} DownloadState */
/** @typedef {import('./events.js').ScreenName} ScreenName */

/**
 * @typedef {object} AppState
 * @property {ScreenName} screen the screen shown
 * @property {ProjectSummary[]} projects newest change first
 * @property {number | null} currentProjectId the project Create generates into and Library shows
 * @property {AccountStatus | null} account
 * @property {ModelEntry[]} models catalog models (installed or not), imported folders and checkpoints
 * @property {LoraEntry[]} loras the LoRA library, by name
 * @property {Limits | null} engineLimits the engine's bounds, before a model is picked
 * @property {Limits | null} cloudLimits the cloud server's, once fetched
 * @property {DownloadState} download
 * @property {Map<string, Job>} jobs this run's jobs of both backends, by `jobKey`
 * @property {Backend} backend where Create runs jobs; the viewer's upscales follow it
 */

/** Where work runs: this machine, or the signed-in account's server. @typedef {'local' | 'cloud'} Backend */

/** Short names of the model families, for LoRAs and pickers. */
export const FAMILY_LABELS = /** @type {Record<import('./types.js').Family, string>} */ ({ sd1: 'SD 1.x', sd2: 'SD 2.x', sdxl: 'SDXL' });

/** @type {AppState} */
export const state = {
  screen: 'create',
  projects: [],
  currentProjectId: null,
  account: null,
  models: [],
  loras: [],
  engineLimits: null,
  cloudLimits: null,
  download: { id: null, running: false, progress: null, errorKind: null, error: null },
  jobs: new Map(),
  backend: 'local',
};

// --- projects ---------------------------------------------------------------------------------

/** The current project's summary, if any. */
export function currentProject() {
  return state.projects.find((p) => p.id === state.currentProjectId) || null;
}

/**
 * Makes `id` the current project (Create and Library follow it).
 * @param {number | null} id
 */
export function selectProject(id) {
  if (state.currentProjectId === id) return;
  state.currentProjectId = id;
  emit(APP_EVENTS.PROJECT_SELECTED, id);
}

/**
 * Reloads the project list; keeps the current project, or picks `prefer`, or the first one.
 * @param {number | null} [prefer]
 */
export async function loadProjects(prefer = null) {
  state.projects = await api.listProjects();
  const has = (/** @type {number | null} */ id) => id !== null && state.projects.some((p) => p.id === id);
  const next = has(prefer) ? prefer : has(state.currentProjectId) ? state.currentProjectId : (state.projects[0]?.id ?? null);
  emit(APP_EVENTS.PROJECTS_CHANGED, state.projects);
  selectProject(next);
}

/**
 * Counts freshly generated images into their project's summary, without a reload.
 * @param {number} projectId
 * @param {ImageDetail[]} images
 */
function countAdded(projectId, images) {
  const project = state.projects.find((p) => p.id === projectId);
  if (!project || !images.length) return;
  project.image_count += images.length;
  project.generated_count += images.filter((i) => i.origin === 'generated').length;
  project.bytes += images.reduce((sum, i) => sum + i.bytes, 0);
  project.cover_thumb = images[images.length - 1].thumb;
  project.updated_at = Date.now();
  emit(APP_EVENTS.PROJECTS_CHANGED, state.projects);
}

// --- account and limits -----------------------------------------------------------------------

/**
 * Records the account status from the core and announces it.
 * @param {AccountStatus} status
 */
export function setAccount(status) {
  const before = state.account?.username;
  state.account = status;
  if (before !== status.username) state.cloudLimits = null;
  emit(APP_EVENTS.ACCOUNT_CHANGED, status);
}

/** Loads the engine's limits (used before a model is picked). */
export async function loadEngineLimits() {
  state.engineLimits = await api.engineLimits();
  return state.engineLimits;
}

/**
 * Fetches the cloud server's limits; keeps the last ones known when the server cannot be
 * reached, so a form stays usable (the job then fails with the offline message).
 * @returns {Promise<Limits>}
 */
export async function loadCloudLimits() {
  try {
    state.cloudLimits = await api.cloudLimits();
  } catch (e) {
    const err = toCommandError(e);
    if (err.kind === 'unauthorized' || !state.cloudLimits) throw err;
  }
  return /** @type {Limits} */ (state.cloudLimits);
}

// --- models -----------------------------------------------------------------------------------

/**
 * @param {ModelEntry[]} models
 */
function setModels(models) {
  state.models = models;
  emit(APP_EVENTS.MODELS_CHANGED, models);
}

/** Reloads the model list. */
export async function loadModels() {
  setModels(await api.listModels());
}

/**
 * Picks a single-file checkpoint and registers it with the configs of the installed model
 * `configModelId`. Resolves to the models that are new in the list (empty when that file was
 * already there), or null when the picker was cancelled; rejects with the core's CommandError.
 * @param {string} configModelId
 * @returns {Promise<ModelEntry[] | null>}
 */
export async function importCheckpoint(configModelId) {
  const known = new Set(state.models.map((m) => m.id));
  const models = await api.importCheckpoint(configModelId);
  if (!models) return null;
  setModels(models);
  return models.filter((m) => !known.has(m.id));
}

/**
 * Forgets an imported folder or checkpoint (its files stay on disk).
 * @param {string} id
 */
export async function forgetModel(id) {
  setModels(await api.forgetModel(id));
}

// --- LoRAs ------------------------------------------------------------------------------------

/** @param {LoraEntry[]} loras */
function setLoras(loras) {
  state.loras = loras;
  emit(APP_EVENTS.LORAS_CHANGED, loras);
}

/** Reloads the LoRA library. */
export async function loadLoras() {
  setLoras(await api.listLoras());
}

/**
 * Picks a LoRA file and copies it into the library. Resolves to the LoRAs that are new (empty
 * when that one was already there), or null when the picker was cancelled.
 * @returns {Promise<LoraEntry[] | null>}
 */
export async function importLora() {
  const known = new Set(state.loras.map((l) => l.name));
  const loras = await api.importLora();
  if (!loras) return null;
  setLoras(loras);
  return loras.filter((l) => !known.has(l.name));
}

/**
 * Removes a LoRA from the library.
 * @param {string} name
 */
export async function removeLora(name) {
  setLoras(await api.removeLora(name));
}

/** @param {Partial<DownloadState>} change */
function setDownload(change) {
  state.download = { ...state.download, ...change };
  emit(APP_EVENTS.MODEL_DOWNLOAD, state.download);
}

/**
 * Downloads a catalog model (resuming what an earlier try left); resolves true when installed.
 * @param {string} id
 */
export async function downloadModel(id) {
  if (state.download.running) return false;
  setDownload({ id, running: true, progress: null, errorKind: null, error: null });
  try {
    const models = await api.downloadModel(id);
    setDownload({ running: false });
    setModels(models);
    return true;
  } catch (e) {
    const err = toCommandError(e);
    setDownload({ running: false, errorKind: err.kind, error: err.message });
    return false;
  }
}

/** Stops the download; the next try resumes where it stopped. */
export function cancelDownload() {
  return api.cancelModelDownload();
}

// --- jobs -------------------------------------------------------------------------------------

/** @param {Job} job */
export const jobKey = (job) => `${job.backend || 'local'}:${job.id}`;

/** @param {Job} job */
export const isActive = (job) => job.state === 'queued' || job.state === 'running';

/**
 * Takes a job's new state; fetches the images it saved since the last report (once, for every
 * screen) and announces them.
 * @param {Job} job
 */
async function jobChanged(job) {
  const previous = state.jobs.get(jobKey(job)) || null;
  state.jobs.set(jobKey(job), job);
  emit(APP_EVENTS.JOB_UPDATED, { job, previous });
  const known = new Set(previous?.images || []);
  const added = job.images.filter((id) => !known.has(id));
  if (!added.length) return;
  /** @type {ImageDetail[]} */
  const images = [];
  for (const id of added) {
    try {
      images.push(await api.getImage(id));
    } catch {
      // Deleted or moved meanwhile: nothing to show.
    }
  }
  imagesAdded(images);
}

/**
 * Announces images saved into a project (by a job, or an upscale): counted, then shown.
 * @param {ImageDetail[]} images of one project
 */
export function imagesAdded(images) {
  if (!images.length) return;
  const projectId = images[0].project_id;
  countAdded(projectId, images);
  emit(APP_EVENTS.IMAGES_ADDED, { projectId, images });
}

/** Loads this run's jobs and follows their changes and the download's progress. */
export async function startTracking() {
  for (const job of await api.listJobs()) state.jobs.set(jobKey(job), job);
  await listen(TAURI_EVENTS.JOB_CHANGED, (job) => { jobChanged(job); });
  await listen(TAURI_EVENTS.MODEL_DOWNLOAD_PROGRESS, (progress) => {
    if (state.download.running) setDownload({ progress });
  });
}
