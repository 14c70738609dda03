// @ts-check
// The Settings screen: where the library lives (change it), verify and repair.
import { api, setLibraryRoot } from '../api.js';
import { APP_EVENTS, emit } from '../events.js';
import { byId, scoped, toast } from '../dom.js';

/** @typedef {import('../types.js').VerifyReport} VerifyReport */

const root = byId('screen-settings');
const { q } = scoped(root);

/** Loads the library location; returns false when no library could be opened. */
export async function loadLibraryInfo() {
  const info = await api.libraryInfo();
  setLibraryRoot(info.root);
  q('#library-root').textContent = info.root || '(none)';
  q('#library-env').hidden = !info.env_override;
  q('#library-change', HTMLButtonElement).disabled = info.env_override;
  if (info.error) toast(info.error, 'error');
  return Boolean(info.root);
}

/** @param {VerifyReport} report */
function describe(report) {
  const problems = report.missing_files.length + report.missing_thumbnails.length
    + report.orphan_files.length + report.hash_mismatches.length;
  if (!problems) return `All ${report.images_checked} images are consistent.`;
  return `${report.missing_files.length} missing file(s), ${report.missing_thumbnails.length} missing thumbnail(s), `
    + `${report.orphan_files.length} file(s) without a record, ${report.hash_mismatches.length} changed file(s).`;
}

/**
 * Runs a library check with its button disabled.
 * @param {string} id
 * @param {string} working
 * @param {() => Promise<string>} fn
 */
function action(id, working, fn) {
  const button = q(`#${id}`, HTMLButtonElement);
  button.addEventListener('click', async () => {
    button.disabled = true;
    q('#library-report').textContent = working;
    try {
      q('#library-report').textContent = await fn();
    } catch (e) {
      q('#library-report').textContent = '';
      toast(e, 'error');
    } finally {
      button.disabled = false;
    }
  });
}

/** @param {import('../types.js').UpscalerInfo | null} info */
function showUpscaler(info) {
  q('#upscaler-name').textContent = info ? info.name : 'Lanczos';
  q('#upscaler-detail').textContent = info ? `(ESRGAN ×${info.scale}, ${info.path})` : '';
  q('#upscaler-clear', HTMLButtonElement).disabled = !info;
}

/** Wires the screen. */
export function initSettings() {
  api.upscalerInfo().then(showUpscaler).catch((e) => { showUpscaler(null); toast(e, 'error'); });
  q('#upscaler-choose').addEventListener('click', async () => {
    try {
      const info = await api.chooseUpscaler(false);
      showUpscaler(info);
      if (info) toast(`Upscaling with ${info.name}`);
    } catch (e) { toast(e, 'error'); }
  });
  q('#upscaler-clear').addEventListener('click', async () => {
    try {
      showUpscaler(await api.chooseUpscaler(true));
    } catch (e) { toast(e, 'error'); }
  });
  q('#library-change').addEventListener('click', async () => {
    try {
      const folder = await api.setLibraryFolder();
      if (folder) {
        await loadLibraryInfo();
        emit(APP_EVENTS.LIBRARY_CHANGED, null);
        toast(`Library: ${folder}`);
      }
    } catch (e) { toast(e, 'error'); }
  });
  action('library-verify', 'Checking…', async () => describe(await api.verifyLibrary()));
  action('library-repair', 'Repairing…', async () => {
    const r = await api.repairLibrary();
    emit(APP_EVENTS.IMAGES_RELOAD, { projectId: null });
    emit(APP_EVENTS.LIBRARY_CHANGED, null);
    return `Re-indexed ${r.reindexed.length}, rebuilt ${r.thumbnails_rebuilt} thumbnail(s). ${describe(r.remaining)}`;
  });
}
