// @ts-check
// The Tauri IPC, typed: one function per core command, errors as `CommandError { kind, message }`,
// and `listen` for the declared Tauri events.

/** @typedef {import('./types.js').ErrorKind} ErrorKind */
/** @typedef {import('./types.js').Limits} Limits */
/** @typedef {import('./types.js').Project} Project */
/** @typedef {import('./types.js').ProjectSummary} ProjectSummary */
/** @typedef {import('./types.js').ImageQuery} ImageQuery */
/** @typedef {import('./types.js').ImagePage} ImagePage */
/** @typedef {import('./types.js').ImageDetail} ImageDetail */
/** @typedef {import('./types.js').OnDuplicate} OnDuplicate */
/** @typedef {import('./types.js').ImportReport} ImportReport */
/** @typedef {import('./types.js').ExportReport} ExportReport */
/** @typedef {import('./types.js').VerifyReport} VerifyReport */
/** @typedef {import('./types.js').RepairReport} RepairReport */
/** @typedef {import('./types.js').LibraryInfo} LibraryInfo */
/** @typedef {import('./types.js').StyleList} StyleList */
/** @typedef {import('./types.js').ModelEntry} ModelEntry */
/** @typedef {import('./types.js').ModelVerifyReport} ModelVerifyReport */
/** @typedef {import('./types.js').LoraEntry} LoraEntry */
/** @typedef {import('./types.js').Job} Job */
/** @typedef {import('./types.js').JobParams} JobParams */
/** @typedef {import('./types.js').CloudJobParams} CloudJobParams */
/** @typedef {import('./types.js').Submitted} Submitted */
/** @typedef {import('./types.js').Backend} Backend */
/** @typedef {import('./types.js').InputInfo} InputInfo */
/** @typedef {import('./types.js').UpscalerInfo} UpscalerInfo */
/** @typedef {import('./types.js').AccountStatus} AccountStatus */
/** @typedef {import('./types.js').CloudSettings} CloudSettings */
/** @typedef {import('./types.js').ApiKeyInfo} ApiKeyInfo */
/** @typedef {import('./types.js').CreatedApiKey} CreatedApiKey */
/** @typedef {import('./events.js').TauriEventMap} TauriEventMap */

const KINDS = ['invalid', 'not_found', 'conflict', 'not_installed', 'offline', 'unauthorized', 'not_confirmed', 'cancelled', 'failed'];

/** A command's typed failure. The UI switches on `kind`, never on the message. */
export class CommandError extends Error {
  /**
   * @param {ErrorKind} kind
   * @param {string} message
   */
  constructor(kind, message) {
    super(message);
    this.name = 'CommandError';
    /** @type {ErrorKind} */
    this.kind = kind;
  }
}

/**
 * Turns whatever a command rejected with into a CommandError.
 * @param {unknown} e
 * @returns {CommandError}
 */
export function toCommandError(e) {
  if (e instanceof CommandError) return e;
  if (e && typeof e === 'object' && 'kind' in e && 'message' in e) {
    const kind = String(e.kind);
    return new CommandError(/** @type {ErrorKind} */ (KINDS.includes(kind) ? kind : 'failed'), String(e.message));
  }
  if (e instanceof Error) return new CommandError('failed', e.message);
  return new CommandError('failed', String(e));
}

/**
 * The sentence to show for any error.
 * @param {unknown} e
 */
export function errorMessage(e) {
  return toCommandError(e).message;
}

/**
 * Invokes a core command; rejects with a CommandError. Every command name appears in this file
 * as the first argument of a call to this function (a test in the shell checks them against its
 * command list).
 * @template T
 * @param {string} command
 * @param {Record<string, unknown>} [args]
 * @returns {Promise<T>}
 */
async function invoke(command, args) {
  try {
    return await window.__TAURI__.core.invoke(command, args);
  } catch (e) {
    throw toCommandError(e);
  }
}

export const api = {
  /** @returns {Promise<LibraryInfo>} */
  libraryInfo: () => invoke('library_info'),
  /** @returns {Promise<string | null>} */
  setLibraryFolder: () => invoke('set_library_folder'),
  /** @returns {Promise<ProjectSummary[]>} */
  listProjects: () => invoke('list_projects'),
  /** @returns {Promise<Project>} the most recently updated project, or a new "My images" */
  defaultProject: () => invoke('default_project'),
  /** @param {string} name @param {string | null} description @returns {Promise<Project>} */
  createProject: (name, description) => invoke('create_project', { name, description }),
  /** @param {number} id @param {string} name @param {string} description @returns {Promise<Project>} */
  updateProject: (id, name, description) => invoke('update_project', { id, name, description }),
  /** @param {number} id @returns {Promise<void>} */
  deleteProject: (id) => invoke('delete_project', { id }),
  /** @param {number} projectId @param {ImageQuery} query @returns {Promise<ImagePage>} */
  listImages: (projectId, query) => invoke('list_images', { projectId, query }),
  /** @param {number} id @returns {Promise<ImageDetail>} */
  getImage: (id) => invoke('get_image', { id }),
  /** @param {number} id @returns {Promise<boolean>} the new state */
  toggleFavorite: (id) => invoke('toggle_favorite', { id }),
  /** @param {number[]} ids @returns {Promise<number>} */
  deleteImages: (ids) => invoke('delete_images', { ids }),
  /** @param {number[]} ids @param {number} targetProject @returns {Promise<number>} */
  moveImages: (ids, targetProject) => invoke('move_images', { ids, targetProject }),
  /** @param {'files' | 'folder'} kind @returns {Promise<string[]>} */
  pickImportPaths: (kind) => invoke('pick_import_paths', { kind }),
  /** @param {number} projectId @param {string[]} paths @param {OnDuplicate} onDuplicate @returns {Promise<ImportReport>} */
  importPaths: (projectId, paths, onDuplicate) =>
    invoke('import_paths', { projectId, paths, options: { on_duplicate: onDuplicate } }),
  /** @param {number} projectId @param {number[] | null} imageIds @returns {Promise<ExportReport | null>} */
  exportZip: (projectId, imageIds) => invoke('export_zip', { projectId, imageIds }),
  /** @returns {Promise<void>} */
  cancelExport: () => invoke('cancel_export'),
  /** @returns {Promise<VerifyReport>} */
  verifyLibrary: () => invoke('verify_library'),
  /** @returns {Promise<RepairReport>} */
  repairLibrary: () => invoke('repair_library'),
  /** @returns {Promise<StyleList>} */
  listStyles: () => invoke('list_styles'),
  /** @param {string} prompt @param {string} negative @param {string[]} styles @returns {Promise<[string, string]>} */
  previewPrompt: (prompt, negative, styles) => invoke('preview_prompt', { prompt, negative, styles }),
  /** @returns {Promise<ModelEntry[]>} */
  listModels: () => invoke('list_models'),
  /** @returns {Promise<Limits>} the engine's own bounds, before a model is picked */
  engineLimits: () => invoke('engine_limits'),
  /** @returns {Promise<Limits>} the cloud server's, from its /health */
  cloudLimits: () => invoke('cloud_limits'),
  /** @returns {Promise<ApiKeyInfo[]>} */
  apiKeys: () => invoke('cloud_api_keys'),
  /** @param {string} name @returns {Promise<CreatedApiKey>} */
  createApiKey: (name) => invoke('cloud_create_api_key', { name }),
  /** @param {string} id @returns {Promise<void>} */
  revokeApiKey: (id) => invoke('cloud_revoke_api_key', { id }),
  /** @param {JobParams} params @returns {Promise<Submitted>} */
  submitJob: (params) => invoke('submit_job', { params }),
  /** @param {CloudJobParams} params @returns {Promise<Submitted>} */
  submitCloudJob: (params) => invoke('submit_cloud_job', { params }),
  /** @param {number} id @param {Backend} backend @returns {Promise<void>} */
  cancelJob: (id, backend) => invoke('cancel_job', { id, backend }),
  /** @param {number} id @returns {Promise<void>} */
  stopJob: (id) => invoke('stop_job', { id }),
  /** @returns {Promise<Job[]>} */
  listJobs: () => invoke('list_jobs'),
  /**
   * Keeps an image to start from (or a painted mask) in the library, by content: a library
   * image, a file, or PNG bytes in base64.
   * @param {{ imageId?: number, path?: string, dataBase64?: string }} source
   * @returns {Promise<InputInfo>}
   */
  keepInput: (source) => invoke('keep_input', source),
  /** @param {string} sha256 @returns {Promise<InputInfo>} */
  inputInfo: (sha256) => invoke('input_info', { sha256 }),
  /**
   * Adds a copy of a library image 2 or 4 times larger to its project, made here or (`cloud`)
   * on the signed-in account's server.
   * @param {number} imageId @param {number} factor 2 or 4 @param {boolean} cloud
   * @returns {Promise<ImageDetail>} the new image
   */
  upscaleImage: (imageId, factor, cloud) => invoke('upscale_image', { imageId, factor, cloud }),
  /** Stops the upscale in progress (here before its next tile; it then rejects as 'cancelled'). */
  cancelUpscale: () => invoke('cancel_upscale'),
  /** @returns {Promise<UpscalerInfo | null>} the ESRGAN upscaler in use; null: Lanczos */
  upscalerInfo: () => invoke('upscaler_info'),
  /**
   * Picks an ESRGAN upscaler file (native dialog) and uses it, or goes back to Lanczos.
   * @param {boolean} clear
   * @returns {Promise<UpscalerInfo | null>} what is in use afterwards
   */
  chooseUpscaler: (clear) => invoke('choose_upscaler', { clear }),
  /** @param {string} id @returns {Promise<ModelEntry[]>} the model list afterwards */
  downloadModel: (id) => invoke('download_model', { id }),
  /** @returns {Promise<void>} */
  cancelModelDownload: () => invoke('cancel_model_download'),
  /**
   * Picks a single-file SD 1.x checkpoint (native dialog) and registers it, used in place with
   * the configs and tokenizer of the installed model `configModelId`.
   * @param {string} configModelId
   * @returns {Promise<ModelEntry[] | null>} the model list afterwards; null when cancelled
   */
  importCheckpoint: (configModelId) => invoke('import_checkpoint', { configModelId }),
  /** @param {string} id imported (leaves the list, files stay) or downloaded (files deleted) @returns {Promise<ModelEntry[]>} the list afterwards */
  forgetModel: (id) => invoke('forget_model', { id }),
  /** @param {string} id a downloaded catalog model @returns {Promise<ModelVerifyReport>} */
  verifyModel: (id) => invoke('verify_model', { id }),
  /** @returns {Promise<LoraEntry[]>} the LoRA library, sorted by name */
  listLoras: () => invoke('list_loras'),
  /** Picks a LoRA file (native dialog) and copies it into the library. @returns {Promise<LoraEntry[] | null>} null when cancelled */
  importLora: () => invoke('import_lora'),
  /** @param {string} name @returns {Promise<LoraEntry[]>} the LoRA library afterwards */
  removeLora: (name) => invoke('remove_lora', { name }),
  /** @returns {Promise<AccountStatus>} */
  accountStatus: () => invoke('account_status'),
  /** @param {CloudSettings} settings @returns {Promise<AccountStatus>} */
  setCloudSettings: (settings) => invoke('set_cloud_settings', { settings }),
  /** @param {string} email @param {string} username @param {string} password @returns {Promise<void>} */
  signUp: (email, username, password) => invoke('account_sign_up', { email, username, password }),
  /** @param {string} username @param {string} code @returns {Promise<void>} */
  confirmSignUp: (username, code) => invoke('account_confirm', { username, code }),
  /** @param {string} username @returns {Promise<void>} */
  resendCode: (username) => invoke('account_resend_code', { username }),
  /** @param {string} username @param {string} password @returns {Promise<AccountStatus>} */
  logIn: (username, password) => invoke('account_log_in', { username, password }),
  /** @param {string} provider e.g. Google @returns {Promise<AccountStatus>} */
  logInWith: (provider) => invoke('account_log_in_with', { provider }),
  /** @param {string} username @returns {Promise<void>} */
  forgotPassword: (username) => invoke('account_forgot_password', { username }),
  /** @param {string} username @param {string} code @param {string} password @returns {Promise<void>} */
  resetPassword: (username, code, password) => invoke('account_reset_password', { username, code, password }),
  /** @returns {Promise<AccountStatus>} */
  signOut: () => invoke('account_sign_out'),
};

/**
 * Listens to one of the shell's declared events.
 * @template {keyof TauriEventMap} K
 * @param {K} event
 * @param {(payload: TauriEventMap[K]) => void} handler
 */
export function listen(event, handler) {
  return window.__TAURI__.event.listen(event, (e) => handler(/** @type {TauriEventMap[K]} */ (e.payload)));
}

/**
 * Listens to one of the window's drag-and-drop events.
 * @param {string} event
 * @param {(payload: { paths?: string[] }) => void} handler
 */
export function listenDrag(event, handler) {
  return window.__TAURI__.event.listen(event, (e) => handler(/** @type {{ paths?: string[] }} */ (e.payload || {})));
}

let libraryRoot = '';

/**
 * Remembers the library folder so library-relative paths can be turned into URLs.
 * @param {string | null} root
 */
export function setLibraryRoot(root) {
  libraryRoot = root || '';
}

/**
 * URL of a library-relative file, served by the asset protocol.
 * @param {string} relative
 */
export function fileUrl(relative) {
  const sep = libraryRoot.includes('\\') && !libraryRoot.includes('/') ? '\\' : '/';
  return window.__TAURI__.core.convertFileSrc(libraryRoot + sep + relative.split('/').join(sep));
}

/**
 * The asset-protocol URL of an absolute path inside the library folder (a kept input).
 * @param {string} path
 */
export function convertFile(path) {
  return window.__TAURI__.core.convertFileSrc(path);
}
