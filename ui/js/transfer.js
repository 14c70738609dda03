// Import (native picker and drag-and-drop) and export (native save dialog) with progress.
import { api, listen } from './api.js';
import { $, toast, formatBytes } from './dom.js';
import { state, emit, currentProject } from './state.js';

function showProgress(title, cancellable) {
  $('progress-title').textContent = title;
  $('progress-bar').value = 0;
  $('progress-bar').max = 1;
  $('progress-text').textContent = 'Starting…';
  $('progress-cancel').hidden = !cancellable;
  $('progress-cancel').disabled = false;
  $('progress-dialog').showModal();
}

function updateProgress({ done, total, current }) {
  $('progress-bar').max = Math.max(total, 1);
  $('progress-bar').value = done;
  $('progress-text').textContent = current ? `${done} of ${total} · ${current}` : `${done} of ${total}`;
}

function summarize(report) {
  const parts = [`Imported ${report.imported.length}`];
  if (report.skipped_duplicates.length) parts.push(`skipped ${report.skipped_duplicates.length} duplicate(s)`);
  if (report.replaced.length) parts.push(`replaced ${report.replaced.length}`);
  if (report.rejected.length) parts.push(`${report.rejected.length} not imported`);
  if (report.cancelled) parts.push('cancelled');
  return parts.join(', ');
}

/** Imports paths into the current project with the chosen duplicate policy. */
export async function importPaths(paths) {
  const project = currentProject();
  if (!project) { toast('Create or choose a project first.', 'error'); return; }
  if (!paths.length) return;
  const policy = document.querySelector('input[name="on-duplicate"]:checked')?.value || 'skip';
  showProgress(`Importing into “${project.name}”`, false);
  try {
    const report = await api.importPaths(project.id, paths, policy);
    toast(summarize(report));
    for (const r of report.rejected.slice(0, 5)) toast(`${r.name}: ${r.reason}`, 'error');
  } catch (e) {
    toast(e, 'error');
  } finally {
    $('progress-dialog').close();
    emit('images-changed');
    emit('gallery-reload');
  }
}

async function pickAndImport(kind) {
  try {
    const paths = await api.pickImportPaths(kind);
    await importPaths(paths);
  } catch (e) { toast(e, 'error'); }
}

async function exportImages(ids) {
  const project = currentProject();
  if (!project) return;
  showProgress(`Exporting “${project.name}”`, true);
  try {
    const report = await api.exportZip(project.id, ids);
    if (report) toast(`Exported ${report.images} image(s) to ${report.path} (${formatBytes(report.bytes)})`);
  } catch (e) {
    toast(e, 'error');
  } finally {
    $('progress-dialog').close();
  }
}

/** Wires the import/export buttons, drag-and-drop and progress events. */
export async function initTransfer() {
  $('import-files').addEventListener('click', () => pickAndImport('files'));
  $('import-folder').addEventListener('click', () => pickAndImport('folder'));
  $('export-project').addEventListener('click', () => exportImages(null));
  $('selection-export').addEventListener('click', () => exportImages([...state.selection]));
  $('progress-cancel').addEventListener('click', () => {
    $('progress-cancel').disabled = true;
    $('progress-text').textContent = 'Cancelling…';
    api.cancelExport();
  });
  $('progress-dialog').addEventListener('cancel', (e) => e.preventDefault());
  await listen('import-progress', (e) => updateProgress(e.payload));
  await listen('export-progress', (e) => updateProgress(e.payload));
  await listen('tauri://drag-enter', () => { if (currentProject()) $('drop-overlay').hidden = false; });
  await listen('tauri://drag-leave', () => { $('drop-overlay').hidden = true; });
  await listen('tauri://drag-drop', (e) => {
    $('drop-overlay').hidden = true;
    importPaths(e.payload.paths || []);
  });
}
