// @ts-check
// The Library screen: the projects (create, rename, delete) and the current project's gallery
// with search, favourites, multi-select, move, delete, import (files, folders, zips, drag and
// drop) and export. Generated images are added in place as they are saved.
import { api, listen, listenDrag, fileUrl } from '../api.js';
import { APP_EVENTS, DRAG_EVENTS, TAURI_EVENTS, emit, on } from '../events.js';
import { byId, el, formatBytes, plural, scoped, toast } from '../dom.js';
import { state, currentProject, selectProject, loadProjects, isActive } from '../store.js';
import { createGallery } from '../components/gallery.js';
import { confirmDialog } from '../components/confirm-dialog.js';
import { projectDialog } from '../components/project-dialog.js';
import { showProgress, updateProgress, closeProgress } from '../components/progress-dialog.js';

/** @typedef {import('../types.js').ImageDetail} ImageDetail */
/** @typedef {import('../types.js').ImportReport} ImportReport */
/** @typedef {import('../types.js').OnDuplicate} OnDuplicate */

const root = byId('screen-library');
const { q, all } = scoped(root);

/**
 * What the Library screen remembers.
 * @typedef {object} LibraryView
 * @property {string} search
 * @property {boolean} favoritesOnly
 * @property {number | null} shownProjectId the project whose images the gallery holds
 */
/** @type {LibraryView} */
const view = { search: '', favoritesOnly: false, shownProjectId: null };

const gallery = createGallery(q('.library-gallery'), (ids) => {
  q('#selection-bar').hidden = ids.length === 0;
  q('#selection-count').textContent = `${ids.length} selected`;
});

function reloadGallery() {
  view.shownProjectId = state.currentProjectId;
  gallery.load(state.currentProjectId, { search: view.search, favoritesOnly: view.favoritesOnly });
}

/** Tells the other screens (and this one) that images changed in ways only a reload shows. */
function imagesChanged() {
  emit(APP_EVENTS.IMAGES_RELOAD, { projectId: state.currentProjectId });
}

// --- projects ---------------------------------------------------------------------------------

function renderProjects() {
  q('#project-list').replaceChildren(...state.projects.map((p) => {
    const cover = p.cover_thumb
      ? el('img', { src: fileUrl(p.cover_thumb), alt: '', loading: 'lazy' })
      : el('div', { className: 'cover-placeholder' });
    const item = el('li', {
      className: p.id === state.currentProjectId ? 'project active' : 'project',
      dataset: { projectId: String(p.id) },
      tabIndex: 0,
      title: p.description || p.name,
      ariaCurrent: p.id === state.currentProjectId ? 'true' : null,
    }, cover, el('div', { className: 'project-meta' },
      el('span', { className: 'project-item-name' }, p.name),
      el('span', { className: 'muted' }, plural(p.image_count, 'image'))));
    const select = () => selectProject(p.id);
    item.addEventListener('click', select);
    item.addEventListener('keydown', (e) => { if (e.key === 'Enter') select(); });
    return item;
  }));
  renderHeader();
  fillMoveTargets();
}

function renderHeader() {
  const project = currentProject();
  q('#library-empty').hidden = Boolean(project);
  q('#library-view').hidden = !project;
  if (!project) return;
  q('#project-name').textContent = project.name;
  q('#project-description').textContent = project.description;
  const generated = project.generated_count ? `, ${project.generated_count} generated` : '';
  const running = [...state.jobs.values()].filter((j) => j.project_id === project.id && isActive(j)).length;
  const jobs = running ? ` · ${plural(running, 'running job')}` : '';
  q('#project-stats').textContent =
    `${plural(project.image_count, 'image')}${generated} · ${formatBytes(project.bytes)} · updated ${new Date(project.updated_at).toLocaleString()}${jobs}`;
}

/** Lists the other projects as move targets. */
function fillMoveTargets() {
  const select = q('#selection-move', HTMLSelectElement);
  const others = state.projects.filter((p) => p.id !== state.currentProjectId);
  select.replaceChildren(
    el('option', { value: '' }, others.length ? 'Move to…' : 'No other project'),
    ...others.map((p) => el('option', { value: String(p.id) }, p.name)),
  );
  select.disabled = !others.length;
}

async function createProject() {
  const project = await projectDialog(null);
  if (!project) return;
  await refresh(project.id);
  toast(`Created “${project.name}”`);
}

async function editProject() {
  const project = currentProject();
  if (!project) return;
  const saved = await projectDialog(project);
  if (!saved) return;
  await refresh(saved.id);
  toast(`Saved “${saved.name}”`);
}

async function deleteProject() {
  const project = currentProject();
  if (!project) return;
  const what = project.image_count ? ` and its ${plural(project.image_count, 'image')}` : '';
  if (!await confirmDialog('Delete project?', `Delete “${project.name}”${what}? This cannot be undone.`)) return;
  try {
    await api.deleteProject(project.id);
    await refresh(null);
    toast(`Deleted “${project.name}”`);
  } catch (e) {
    toast(e, 'error');
  }
}

/**
 * Reloads the project list (after a change the core made).
 * @param {number | null} [prefer]
 */
async function refresh(prefer = null) {
  try {
    await loadProjects(prefer);
  } catch (e) { toast(e, 'error'); }
}

// --- selection --------------------------------------------------------------------------------

async function deleteSelection() {
  const ids = gallery.selection();
  if (!await confirmDialog('Delete images?', `Delete ${plural(ids.length, 'image')} from this project? This cannot be undone.`)) return;
  try {
    await api.deleteImages(ids);
    toast(`Deleted ${plural(ids.length, 'image')}`);
    imagesChanged();
    await refresh();
  } catch (e) { toast(e, 'error'); }
}

async function favoriteSelection() {
  for (const id of gallery.selection()) {
    const node = q('.gallery').querySelector(`[data-image-id="${id}"]`);
    if (node && !node.classList.contains('favorite')) {
      try {
        emit(APP_EVENTS.FAVORITE_CHANGED, { id, favorite: await api.toggleFavorite(id) });
      } catch (e) { toast(e, 'error'); return; }
    }
  }
}

async function moveSelection() {
  const select = q('#selection-move', HTMLSelectElement);
  const target = Number(select.value);
  select.value = '';
  if (!target) return;
  const ids = gallery.selection();
  const name = state.projects.find((p) => p.id === target)?.name || 'the project';
  try {
    await api.moveImages(ids, target);
    toast(`Moved ${plural(ids.length, 'image')} to “${name}”`);
    imagesChanged();
    await refresh();
  } catch (e) { toast(e, 'error'); }
}

// --- import and export ------------------------------------------------------------------------

/** @param {ImportReport} report */
function summarize(report) {
  const parts = [`Imported ${report.imported.length}`];
  if (report.skipped_duplicates.length) parts.push(`skipped ${report.skipped_duplicates.length} duplicate(s)`);
  if (report.replaced.length) parts.push(`replaced ${report.replaced.length}`);
  if (report.rejected.length) {
    const shown = report.rejected.slice(0, 3).map((r) => `${r.name}: ${r.reason}`).join('; ');
    parts.push(`${report.rejected.length} not imported (${shown}${report.rejected.length > 3 ? '; …' : ''})`);
  }
  if (report.cancelled) parts.push('cancelled');
  return parts.join(', ');
}

/**
 * Imports paths into the current project with the chosen duplicate policy.
 * @param {string[]} paths
 */
async function importPaths(paths) {
  const project = currentProject();
  if (!project) { toast('Create or choose a project first.', 'error'); return; }
  if (!paths.length) return;
  const checked = all('input[name="on-duplicate"]', HTMLInputElement).find((r) => r.checked);
  const policy = /** @type {OnDuplicate} */ (checked?.value || 'skip');
  showProgress(`Importing into “${project.name}”`, null);
  try {
    const report = await api.importPaths(project.id, paths, policy);
    toast(summarize(report), report.rejected.length ? 'error' : 'info');
  } catch (e) {
    toast(e, 'error');
  } finally {
    closeProgress();
    imagesChanged();
    await refresh();
  }
}

/** @param {'files' | 'folder'} kind */
async function pickAndImport(kind) {
  try {
    await importPaths(await api.pickImportPaths(kind));
  } catch (e) { toast(e, 'error'); }
}

/** @param {number[] | null} ids null: the whole project */
async function exportImages(ids) {
  const project = currentProject();
  if (!project) return;
  showProgress(`Exporting “${project.name}”`, () => { api.cancelExport(); });
  try {
    const report = await api.exportZip(project.id, ids);
    if (report) toast(`Exported ${plural(report.images, 'image')} to ${report.path} (${formatBytes(report.bytes)})`);
  } catch (e) {
    toast(e, 'error');
  } finally {
    closeProgress();
  }
}

// --- wiring -----------------------------------------------------------------------------------

/** @param {{ projectId: number, images: ImageDetail[] }} added */
function onImagesAdded({ projectId, images }) {
  if (projectId !== view.shownProjectId) return;
  const needle = view.search.toLowerCase();
  const fits = images.filter((i) => (!view.favoritesOnly || i.favorite)
    && (!needle || `${i.prompt} ${i.recipe.negative_prompt || ''} ${i.original_name}`.toLowerCase().includes(needle)));
  gallery.prepend(fits);
}

/** Wires the screen; the store's project events drive it. */
export async function initLibrary() {
  q('#library-new-project').addEventListener('click', createProject);
  q('#library-empty-new').addEventListener('click', createProject);
  q('#edit-project').addEventListener('click', editProject);
  q('#delete-project').addEventListener('click', deleteProject);
  q('#import-files').addEventListener('click', () => pickAndImport('files'));
  q('#import-folder').addEventListener('click', () => pickAndImport('folder'));
  q('#export-project').addEventListener('click', () => exportImages(null));
  q('#selection-export').addEventListener('click', () => exportImages(gallery.selection()));
  q('#selection-delete').addEventListener('click', deleteSelection);
  q('#selection-favorite').addEventListener('click', favoriteSelection);
  q('#selection-move').addEventListener('change', moveSelection);
  q('#selection-clear').addEventListener('click', () => gallery.clearSelection());
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  let searchTimer;
  const search = q('#search', HTMLInputElement);
  search.addEventListener('input', () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => { view.search = search.value.trim(); reloadGallery(); }, 250);
  });
  const favorites = q('#favorites-only', HTMLInputElement);
  favorites.addEventListener('change', () => { view.favoritesOnly = favorites.checked; reloadGallery(); });

  on(APP_EVENTS.PROJECTS_CHANGED, renderProjects);
  on(APP_EVENTS.PROJECT_SELECTED, () => { renderProjects(); reloadGallery(); });
  on(APP_EVENTS.IMAGES_RELOAD, ({ projectId }) => { if (projectId === null || projectId === view.shownProjectId) reloadGallery(); });
  on(APP_EVENTS.IMAGES_ADDED, onImagesAdded);
  on(APP_EVENTS.JOB_UPDATED, ({ job, previous }) => {
    if (job.project_id === state.currentProjectId && isActive(job) !== Boolean(previous && isActive(previous))) renderHeader();
  });
  on(APP_EVENTS.SHOW_IN_LIBRARY, ({ imageId, projectId }) => {
    if (projectId !== state.currentProjectId) selectProject(projectId);
    gallery.reveal(imageId);
  });

  const overlay = byId('drop-overlay');
  await listen(TAURI_EVENTS.IMPORT_PROGRESS, updateProgress);
  await listen(TAURI_EVENTS.EXPORT_PROGRESS, updateProgress);
  // On Create a dropped image is the one to start from (create.js); elsewhere drops import.
  await listenDrag(DRAG_EVENTS.ENTER, () => { if (currentProject() && state.screen !== 'create') overlay.hidden = false; });
  await listenDrag(DRAG_EVENTS.LEAVE, () => { overlay.hidden = true; });
  await listenDrag(DRAG_EVENTS.DROP, (payload) => {
    overlay.hidden = true;
    if (state.screen !== 'create') importPaths(payload.paths || []);
  });
  renderProjects();
}
