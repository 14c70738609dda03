// @ts-check
// Entry point: wires the frame (rail, dialogs) and the screens, then loads the library and opens
// Create on the default project, so a prompt can be typed at once.
import { api } from './api.js';
import { APP_EVENTS, on } from './events.js';
import { toast } from './dom.js';
import { initNav, showScreen } from './nav.js';
import { loadProjects, loadEngineLimits, loadModels, loadLoras, selectProject, startTracking } from './store.js';
import { initViewer } from './components/viewer.js';
import { initMaskPainter } from './components/mask-painter.js';
import { initProjectDialog } from './components/project-dialog.js';
import { initProgressDialog } from './components/progress-dialog.js';
import { initCreate, focusPrompt } from './screens/create.js';
import { initLibrary } from './screens/library.js';
import { initModels } from './screens/models.js';
import { initAccount } from './screens/account.js';
import { initSettings, loadLibraryInfo } from './screens/settings.js';

/** Opens the most recently used project (the core makes "My images" in an empty library). */
async function openDefaultProject() {
  try {
    const project = await api.defaultProject();
    await loadProjects(project.id);
  } catch (e) {
    toast(e, 'error');
    await loadProjects();
  }
}

/**
 * Runs a step of the start; a failure is shown and the rest goes on.
 * @param {() => Promise<unknown> | unknown} step
 */
async function attempt(step) {
  try {
    await step();
  } catch (e) {
    toast(e, 'error');
  }
}

async function start() {
  initNav();
  await initViewer();
  initMaskPainter();
  initProjectDialog();
  initProgressDialog();
  initSettings();
  initModels();
  showScreen('create');
  await initLibrary();
  await initCreate();
  const library = await loadLibraryInfo().catch((e) => { toast(e, 'error'); return false; });
  await attempt(loadEngineLimits);
  await attempt(startTracking);
  await attempt(loadModels);
  await attempt(loadLoras);
  if (library) await openDefaultProject();
  on(APP_EVENTS.LIBRARY_CHANGED, () => {
    selectProject(null);
    openDefaultProject();
  });
  await attempt(initAccount);
  focusPrompt();
  document.body.dataset.ready = 'true';
}

start().catch((e) => toast(e, 'error'));
