// Library settings: where the library lives, verify and repair.
import { api, setLibraryRoot } from './api.js';
import { $, toast } from './dom.js';
import { emit } from './state.js';

/** Loads the library location; returns false when no library could be opened. */
export async function loadLibraryInfo() {
  const info = await api.libraryInfo();
  setLibraryRoot(info.root);
  $('library-root').textContent = info.root || '(none)';
  $('library-env').hidden = !info.env_override;
  $('library-change').disabled = info.env_override;
  if (info.error) toast(info.error, 'error');
  return Boolean(info.root);
}

function describe(report) {
  const problems = report.missing_files.length + report.missing_thumbnails.length
    + report.orphan_files.length + report.hash_mismatches.length;
  if (!problems) return `All ${report.images_checked} images are consistent.`;
  return `${report.missing_files.length} missing file(s), ${report.missing_thumbnails.length} missing thumbnail(s), `
    + `${report.orphan_files.length} file(s) without a record, ${report.hash_mismatches.length} changed file(s).`;
}

/** Wires the settings dialog. */
export function initSettings() {
  $('open-settings').addEventListener('click', () => { $('library-report').textContent = ''; $('settings-dialog').showModal(); });
  $('library-change').addEventListener('click', async () => {
    try {
      const root = await api.setLibraryFolder();
      if (root) { await loadLibraryInfo(); emit('library-changed'); toast(`Library: ${root}`); }
    } catch (e) { toast(e, 'error'); }
  });
  $('library-verify').addEventListener('click', async () => {
    $('library-report').textContent = 'Checking…';
    try { $('library-report').textContent = describe(await api.verifyLibrary()); } catch (e) { toast(e, 'error'); }
  });
  $('library-repair').addEventListener('click', async () => {
    $('library-report').textContent = 'Repairing…';
    try {
      const r = await api.repairLibrary();
      $('library-report').textContent = `Re-indexed ${r.reindexed.length}, rebuilt ${r.thumbnails_rebuilt} thumbnail(s). ${describe(r.remaining)}`;
      emit('images-changed');
      emit('gallery-reload');
    } catch (e) { toast(e, 'error'); }
  });
}
