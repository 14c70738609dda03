// @ts-check
// Create or edit a project in a modal dialog; problems (an empty or duplicate name) show inline.
import { api, toCommandError } from '../api.js';
import { byId, openModal, scoped } from '../dom.js';

/** @typedef {import('../types.js').Project} Project */

const dialog = byId('project-dialog', HTMLDialogElement);
const { q } = scoped(dialog);
/** @type {{ editing: Project | null, resolve: ((p: Project | null) => void) | null }} */
const open = { editing: null, resolve: null };

/**
 * Opens the dialog to create a project (`project` null) or edit one; resolves to the saved
 * project, or null when cancelled.
 * @param {Project | null} project
 * @returns {Promise<Project | null>}
 */
export function projectDialog(project) {
  open.editing = project;
  q('#project-dialog-title').textContent = project ? `Edit “${project.name}”` : 'New project';
  q('#project-name-input', HTMLInputElement).value = project ? project.name : '';
  q('#project-description-input', HTMLTextAreaElement).value = project ? project.description : '';
  q('#project-form-error').textContent = '';
  openModal(dialog);
  q('#project-name-input').focus();
  return new Promise((resolve) => { open.resolve = resolve; });
}

/** @param {SubmitEvent} event */
async function save(event) {
  const submitter = /** @type {HTMLButtonElement | null} */ (event.submitter);
  if (submitter && submitter.value !== 'save') return;
  event.preventDefault();
  const name = q('#project-name-input', HTMLInputElement).value;
  const description = q('#project-description-input', HTMLTextAreaElement).value;
  const editing = open.editing;
  if (!name.trim()) {
    q('#project-form-error').textContent = 'Give the project a name.';
    return;
  }
  try {
    const project = editing
      ? await api.updateProject(editing.id, name, description)
      : await api.createProject(name, description || null);
    const resolve = open.resolve;
    open.resolve = null;
    dialog.close('saved');
    resolve?.(project);
  } catch (e) {
    q('#project-form-error').textContent = toCommandError(e).message;
  }
}

/** Wires the form. */
export function initProjectDialog() {
  q('#project-form', HTMLFormElement).addEventListener('submit', (e) => save(/** @type {SubmitEvent} */ (e)));
  dialog.addEventListener('close', () => {
    const resolve = open.resolve;
    open.resolve = null;
    resolve?.(null);
  });
}
