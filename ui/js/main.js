// Entry point: wires the screens and loads the library.
import { initProjects, refreshProjects } from './projects.js';
import { initGallery } from './gallery.js';
import { initViewer } from './viewer.js';
import { initTransfer } from './transfer.js';
import { initSettings, loadLibraryInfo } from './settings.js';
import { initGenerate } from './generate.js';
import { initAccount } from './account.js';
import { on } from './state.js';
import { toast } from './dom.js';

async function start() {
  initProjects();
  initGallery();
  initViewer();
  initSettings();
  await initTransfer();
  on('library-changed', refreshProjects);
  if (await loadLibraryInfo()) await refreshProjects();
  await initAccount().catch((e) => toast(e, 'error'));
  await initGenerate();
  document.body.dataset.ready = 'true';
}

start().catch((e) => toast(e, 'error'));
