// @ts-check
// Every event name the UI uses, declared once: the Tauri events the Rust shell emits (the same
// list as src-tauri/events.rs; a test checks they agree), the WebView's drag-and-drop events,
// and the UI's own app events with their payload types, on a small typed bus.

/** @typedef {import('./types.js').Job} Job */
/** @typedef {import('./types.js').JobProgress} JobProgress */
/** @typedef {import('./types.js').DownloadProgress} DownloadProgress */
/** @typedef {import('./types.js').TransferProgress} TransferProgress */
/** @typedef {import('./types.js').UpscaleProgress} UpscaleProgress */
/** @typedef {import('./types.js').ImageDetail} ImageDetail */
/** @typedef {import('./types.js').Recipe} Recipe */
/** @typedef {import('./types.js').AccountStatus} AccountStatus */
/** @typedef {import('./types.js').ModelEntry} ModelEntry */
/** @typedef {import('./types.js').LoraEntry} LoraEntry */
/** @typedef {import('./types.js').ProjectSummary} ProjectSummary */

/** Events the Rust shell emits. */
export const TAURI_EVENTS = Object.freeze({
  JOB_CHANGED: 'job-changed',
  JOB_PROGRESS: 'job-progress',
  MODEL_DOWNLOAD_PROGRESS: 'model-download-progress',
  IMPORT_PROGRESS: 'import-progress',
  EXPORT_PROGRESS: 'export-progress',
  UPSCALE_PROGRESS: 'upscale-progress',
});

/**
 * Payload of each Tauri event.
 * @typedef {object} TauriEventMap
 * @property {Job} job-changed
 * @property {JobProgress} job-progress
 * @property {DownloadProgress} model-download-progress
 * @property {TransferProgress} import-progress
 * @property {TransferProgress} export-progress
 * @property {UpscaleProgress} upscale-progress
 */

/** Drag-and-drop events of the WebView window (Tauri's own). */
export const DRAG_EVENTS = Object.freeze({
  ENTER: 'tauri://drag-enter',
  LEAVE: 'tauri://drag-leave',
  DROP: 'tauri://drag-drop',
});

/** @typedef {'create' | 'library' | 'models' | 'account' | 'settings'} ScreenName */

/** The UI's own events between screens and stores. */
export const APP_EVENTS = Object.freeze({
  /** Ask the navigation to show a screen. */
  NAVIGATE: 'navigate',
  /** A screen became visible. */
  SCREEN_SHOWN: 'screen-shown',
  /** The project list was loaded or changed. */
  PROJECTS_CHANGED: 'projects-changed',
  /** The current project is another one (or none). */
  PROJECT_SELECTED: 'project-selected',
  /** Images were added or removed in a way only a reload shows (import, move, delete, repair). */
  IMAGES_RELOAD: 'images-reload',
  /** Generated images were saved (fetched once, with their recipe). */
  IMAGES_ADDED: 'images-added',
  /** An image's favourite mark changed. */
  FAVORITE_CHANGED: 'favorite-changed',
  /** A job was added or changed (the job store's view of `job-changed`). */
  JOB_UPDATED: 'job-updated',
  /** The model list changed (after a download or an import). */
  MODELS_CHANGED: 'models-changed',
  /** The LoRA library was loaded or changed (import, remove). */
  LORAS_CHANGED: 'loras-changed',
  /** The model download started, advanced, finished or stopped. */
  MODEL_DOWNLOAD: 'model-download',
  /** Signed in, out, or the cloud service changed. */
  ACCOUNT_CHANGED: 'account-changed',
  /** Start the next Create job from a library image ("use as input"). */
  USE_AS_INPUT: 'use-as-input',
  /** Fill the Create form from a recipe ("reuse parameters"). */
  REUSE_RECIPE: 'reuse-recipe',
  /** Show an image in the library. */
  SHOW_IN_LIBRARY: 'show-in-library',
  /** The library folder changed. */
  LIBRARY_CHANGED: 'library-changed',
});

/**
 * The state of the model download, as the model store reports it.
 * @typedef {object} DownloadState
 * @property {string | null} id the model being downloaded, or the last one tried
 * @property {boolean} running
 * @property {DownloadProgress | null} progress
 * @property {import('./types.js').ErrorKind | null} errorKind set when the last try failed
 * @property {string | null} error
 */

/**
 * Payload of each app event.
 * @typedef {object} AppEventMap
 * @property {ScreenName} navigate
 * @property {ScreenName} screen-shown
 * @property {ProjectSummary[]} projects-changed
 * @property {number | null} project-selected
 * @property {{ projectId: number | null }} images-reload
 * @property {{ projectId: number, images: ImageDetail[] }} images-added
 * @property {{ id: number, favorite: boolean }} favorite-changed
 * @property {{ job: Job, previous: Job | null }} job-updated
 * @property {ModelEntry[]} models-changed
 * @property {LoraEntry[]} loras-changed
 * @property {DownloadState} model-download
 * @property {AccountStatus} account-changed
 * @property {{ imageId: number }} use-as-input
 * @property {Recipe} reuse-recipe
 * @property {{ imageId: number, projectId: number }} show-in-library
 * @property {null} library-changed
 */

/** @typedef {keyof AppEventMap} AppEventName */

/** @type {Map<string, Array<(detail: any) => void>>} */
const listeners = new Map();

/**
 * Subscribes to an app event; returns the function that unsubscribes.
 * @template {AppEventName} K
 * @param {K} name
 * @param {(detail: AppEventMap[K]) => void} fn
 * @returns {() => void}
 */
export function on(name, fn) {
  const list = listeners.get(name) || [];
  list.push(fn);
  listeners.set(name, list);
  return () => {
    const now = listeners.get(name) || [];
    listeners.set(name, now.filter((f) => f !== fn));
  };
}

/**
 * Announces an app event to its subscribers, in the order they subscribed. One that throws does
 * not stop the others.
 * @template {AppEventName} K
 * @param {K} name
 * @param {AppEventMap[K]} detail
 */
export function emit(name, detail) {
  for (const fn of [...(listeners.get(name) || [])]) {
    try {
      fn(detail);
    } catch (e) {
      console.error(`${name} listener failed`, e);
    }
  }
}
