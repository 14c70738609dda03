// @ts-check
// The navigation rail: one button per screen, the account entry ("☁ Log in" or the username),
// and the screen switch (the `navigate` app event asks for one).
import { APP_EVENTS, emit, on } from './events.js';
import { byId, scoped } from './dom.js';
import { state } from './store.js';

/** @typedef {import('./events.js').ScreenName} ScreenName */

/** @type {ScreenName[]} */
const SCREENS = ['create', 'library', 'models', 'account', 'settings'];

/**
 * @param {string | undefined} name
 * @returns {name is ScreenName}
 */
function isScreen(name) {
  return SCREENS.some((s) => s === name);
}

/**
 * Shows one screen and hides the others.
 * @param {ScreenName} name
 */
export function showScreen(name) {
  for (const screen of SCREENS) byId(`screen-${screen}`).hidden = screen !== name;
  const rail = byId('rail');
  for (const button of scoped(rail).all('[data-screen]')) {
    if (button.dataset.screen === name) button.setAttribute('aria-current', 'page');
    else button.removeAttribute('aria-current');
  }
  document.body.dataset.screen = name;
  state.screen = name;
  emit(APP_EVENTS.SCREEN_SHOWN, name);
}

/** Wires the rail. */
export function initNav() {
  const rail = byId('rail');
  const { q, all } = scoped(rail);
  for (const button of all('[data-screen]')) {
    button.addEventListener('click', () => {
      const name = button.dataset.screen;
      if (isScreen(name)) showScreen(name);
    });
  }
  on(APP_EVENTS.NAVIGATE, showScreen);
  on(APP_EVENTS.ACCOUNT_CHANGED, (status) => {
    q('#account-label').textContent = status.username || 'Log in';
    q('#open-account').title = status.username ? `Signed in as ${status.username}` : 'Log in to generate in the cloud';
  });
}
