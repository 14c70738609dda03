// The projects sidebar and the project header: list, create, rename/describe, delete, switch.
import { api, fileUrl } from './api.js';
import { $, el, toast, formatBytes, confirmDialog } from './dom.js';
import { state, on, emit, currentProject } from './state.js';

/** Reloads the project list and keeps (or picks) the current project. */
export async function refreshProjects() {
  try {
    state.projects = await api.listProjects();
  } catch (e) {
    toast(e, 'error');
    return;
  }
  if (!state.projects.some((p) => p.id === state.currentId)) {
    state.currentId = state.projects.length ? state.projects[0].id : null;
    emit('project-changed');
  }
  render();
  emit('projects-loaded');
}

function render() {
  const list = $('project-list');
  list.replaceChildren(...state.projects.map((p) => {
    const cover = p.cover_thumb
      ? el('img', { src: fileUrl(p.cover_thumb), alt: '', loading: 'lazy' })
      : el('div', { className: 'cover-placeholder' });
    const item = el('li', {
      className: p.id === state.currentId ? 'project active' : 'project',
      dataset: { projectId: String(p.id) },
      tabIndex: 0,
      title: p.description || p.name,
    }, cover, el('div', { className: 'project-meta' },
      el('span', { className: 'project-item-name' }, p.name),
      el('span', { className: 'muted' }, `${p.image_count} image${p.image_count === 1 ? '' : 's'}`)));
    const select = () => selectProject(p.id);
    item.addEventListener('click', select);
    item.addEventListener('keydown', (e) => { if (e.key === 'Enter') select(); });
    return item;
  }));
  const project = currentProject();
  $('no-project').hidden = Boolean(project);
  $('project-view').hidden = !project;
  if (project) {
    $('project-name').textContent = project.name;
    $('project-description').textContent = project.description;
    const generated = project.generated_count ? `, ${project.generated_count} generated` : '';
    const jobs = project.running_jobs ? ` · ${project.running_jobs} running task(s)` : '';
    $('project-stats').textContent =
      `${project.image_count} images${generated} · ${formatBytes(project.bytes)} · updated ${new Date(project.updated_at).toLocaleString()}${jobs}`;
  }
}

function selectProject(id) {
  if (state.currentId === id) return;
  state.currentId = id;
  state.selection.clear();
  render();
  emit('project-changed');
  emit('projects-loaded');
}

/** Opens the create/edit dialog; resolves when it closes. */
function projectDialog(project) {
  const dialog = $('project-dialog');
  $('project-dialog-title').textContent = project ? `Edit “${project.name}”` : 'New project';
  $('project-name-input').value = project ? project.name : '';
  $('project-description-input').value = project ? project.description : '';
  $('project-form-error').textContent = '';
  dialog.showModal();
  $('project-name-input').focus();
}

async function saveProject(event) {
  const form = $('project-form');
  if (event.submitter && event.submitter.value !== 'save') return;
  event.preventDefault();
  const name = $('project-name-input').value;
  const description = $('project-description-input').value;
  const editing = form.dataset.editing ? Number(form.dataset.editing) : null;
  if (!editing && !name.trim()) {
    $('project-form-error').textContent = 'Give the project a name.';
    return;
  }
  try {
    const project = editing
      ? await api.updateProject(editing, name, description)
      : await api.createProject(name, description || null);
    $('project-dialog').close('saved');
    state.currentId = project.id;
    await refreshProjects();
    emit('project-changed');
    toast(editing ? `Saved “${project.name}”` : `Created “${project.name}”`);
  } catch (e) {
    $('project-form-error').textContent = String(e);
  }
}

async function deleteCurrent() {
  const project = currentProject();
  if (!project) return;
  const what = project.image_count ? ` and its ${project.image_count} image(s)` : '';
  if (!await confirmDialog('Delete project?', `Delete “${project.name}”${what}? This cannot be undone.`)) return;
  try {
    await api.deleteProject(project.id);
    state.currentId = null;
    await refreshProjects();
    toast(`Deleted “${project.name}”`);
  } catch (e) {
    toast(e, 'error');
  }
}

/** Wires the sidebar and header controls. */
export function initProjects() {
  const create = () => { delete $('project-form').dataset.editing; projectDialog(null); };
  $('new-project').addEventListener('click', create);
  $('empty-new-project').addEventListener('click', create);
  $('edit-project').addEventListener('click', () => {
    const project = currentProject();
    $('project-form').dataset.editing = String(project.id);
    projectDialog(project);
  });
  $('delete-project').addEventListener('click', deleteCurrent);
  $('project-form').addEventListener('submit', saveProject);
  on('images-changed', refreshProjects);
}
