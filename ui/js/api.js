// Thin wrappers over the Tauri IPC: one function per core command.
const { invoke, convertFileSrc } = window.__TAURI__.core;
const { listen } = window.__TAURI__.event;

export { listen };

export const api = {
  libraryInfo: () => invoke('library_info'),
  setLibraryFolder: () => invoke('set_library_folder'),
  listProjects: () => invoke('list_projects'),
  createProject: (name, description) => invoke('create_project', { name, description }),
  updateProject: (id, name, description) => invoke('update_project', { id, name, description }),
  deleteProject: (id) => invoke('delete_project', { id }),
  listImages: (projectId, query) => invoke('list_images', { projectId, query }),
  getImage: (id) => invoke('get_image', { id }),
  toggleFavorite: (id) => invoke('toggle_favorite', { id }),
  deleteImages: (ids) => invoke('delete_images', { ids }),
  moveImages: (ids, targetProject) => invoke('move_images', { ids, targetProject }),
  pickImportPaths: (kind) => invoke('pick_import_paths', { kind }),
  importPaths: (projectId, paths, onDuplicate) =>
    invoke('import_paths', { projectId, paths, options: { on_duplicate: onDuplicate } }),
  exportZip: (projectId, imageIds) => invoke('export_zip', { projectId, imageIds }),
  cancelExport: () => invoke('cancel_export'),
  verifyLibrary: () => invoke('verify_library'),
  repairLibrary: () => invoke('repair_library'),
  listStyles: () => invoke('list_styles'),
  previewPrompt: (prompt, negative, styles) => invoke('preview_prompt', { prompt, negative, styles }),
  listModels: () => invoke('list_models'),
  submitJob: (params) => invoke('submit_job', { params }),
  cancelJob: (id, backend) => invoke('cancel_job', { id, backend }),
  stopJob: (id) => invoke('stop_job', { id }),
  listJobs: () => invoke('list_jobs'),
  downloadModel: (id) => invoke('download_model', { id }),
  cancelModelDownload: () => invoke('cancel_model_download'),
  accountStatus: () => invoke('account_status'),
  setCloudSettings: (settings) => invoke('set_cloud_settings', { settings }),
  signUp: (email, username, password) => invoke('account_sign_up', { email, username, password }),
  confirmSignUp: (username, code) => invoke('account_confirm', { username, code }),
  resendCode: (username) => invoke('account_resend_code', { username }),
  logIn: (username, password) => invoke('account_log_in', { username, password }),
  forgotPassword: (username) => invoke('account_forgot_password', { username }),
  resetPassword: (username, code, password) => invoke('account_reset_password', { username, code, password }),
  signOut: () => invoke('account_sign_out'),
  submitCloudJob: (params) => invoke('submit_cloud_job', { params }),
};

let libraryRoot = '';

/** Remembers the library folder so library-relative paths can be turned into URLs. */
export function setLibraryRoot(root) {
  libraryRoot = root || '';
}

/** URL of a library-relative file, served by the asset protocol. */
export function fileUrl(relative) {
  const sep = libraryRoot.includes('\\') && !libraryRoot.includes('/') ? '\\' : '/';
  return convertFileSrc(libraryRoot + sep + relative.split('/').join(sep));
}
