// @ts-check
// The Account screen: log in, sign up → confirm, resend, forgot → reset, signed in → sign out,
// and the cloud service settings. The store announces each new status (`account-changed`).
import { api, toCommandError } from '../api.js';
import { APP_EVENTS, on } from '../events.js';
import { byId, scoped, toast } from '../dom.js';
import { state, setAccount } from '../store.js';

/** @typedef {import('../types.js').AccountStatus} AccountStatus */
/** @typedef {import('../types.js').ApiKeyInfo} ApiKeyInfo */
/** @typedef {'login' | 'signup' | 'confirm' | 'forgot' | 'signed-in'} AccountView */

const root = byId('screen-account');
const { q, all } = scoped(root);

/** @type {Record<AccountView, string>} */
const TITLES = { login: 'Log in', signup: 'Create an account', confirm: 'Confirm your account', forgot: 'Reset your password', 'signed-in': 'Account' };

/** @param {string} id */
const field = (id) => q(`#${id}`, HTMLInputElement);
/** @param {string} id */
const value = (id) => field(id).value.trim();

/**
 * @param {string | undefined} name
 * @returns {name is AccountView}
 */
function isView(name) {
  return name !== undefined && name in TITLES;
}

/** @param {AccountView} name */
function show(name) {
  for (const node of all('.account-view')) node.hidden = node.dataset.view !== name;
  q('#account-title').textContent = TITLES[name];
  root.dataset.view = name;
  q('#account-error').textContent = '';
}

/** The view that fits the account state. */
function home() {
  const signedIn = Boolean(state.account?.username);
  show(signedIn ? 'signed-in' : 'login');
  if (signedIn) loadKeys();
}

/** @param {ApiKeyInfo[]} keys */
function renderKeys(keys) {
  const list = q('#api-key-list');
  list.replaceChildren(...keys.map((key) => {
    const item = document.createElement('li');
    item.dataset.id = key.id;
    const name = document.createElement('span');
    name.className = 'api-key-name';
    name.textContent = key.name;
    const made = document.createElement('span');
    made.className = 'muted';
    made.textContent = `made ${new Date(key.created_at * 1000).toLocaleDateString()}`;
    item.append(name, made);
    if (key.revoked) {
      const revoked = document.createElement('span');
      revoked.className = 'muted';
      revoked.textContent = 'revoked';
      item.append(revoked);
    } else {
      const revoke = document.createElement('button');
      revoke.type = 'button';
      revoke.className = 'danger';
      revoke.textContent = 'Revoke';
      revoke.addEventListener('click', () => act(revoke, async () => {
        await api.revokeApiKey(key.id);
        toast(`Key “${key.name}” revoked`);
        await loadKeys();
      }));
      item.append(revoke);
    }
    return item;
  }));
  q('#api-key-empty').textContent = 'No keys yet.';
  q('#api-key-empty').hidden = keys.length > 0;
}

/** Lists the account's API keys (a server without them says so inline). */
async function loadKeys() {
  try {
    renderKeys(await api.apiKeys());
  } catch (e) {
    q('#api-key-list').replaceChildren();
    q('#api-key-empty').hidden = false;
    q('#api-key-empty').textContent = `API keys are not available: ${toCommandError(e).message}`;
  }
}

/** @param {AccountStatus} status */
function render(status) {
  q('#account-username').textContent = status.username || '';
  q('#account-problem').hidden = status.configured;
  q('#account-problem').textContent = status.problem || '';
  const service = q('#account-service', HTMLDetailsElement);
  if (!status.configured) service.open = true;
  const s = status.settings;
  field('service-api-url').value = s.api_url;
  field('service-region').value = s.region;
  field('service-pool').value = s.user_pool_id;
  field('service-client').value = s.client_id;
  field('service-endpoint').value = s.cognito_endpoint;
  field('service-domain').value = s.hosted_ui_domain;
  q('#login-google').hidden = !status.configured || !s.hosted_ui_domain;
}

/**
 * Runs an account action with its button disabled; shows its error inline.
 * @param {HTMLButtonElement | null} button
 * @param {() => Promise<void>} fn
 */
async function act(button, fn) {
  q('#account-error').textContent = '';
  if (button) button.disabled = true;
  try {
    await fn();
  } catch (e) {
    q('#account-error').textContent = toCommandError(e).message;
  } finally {
    if (button) button.disabled = false;
  }
}

/** @param {...string} ids */
function required(...ids) {
  for (const id of ids) {
    if (!value(id)) {
      const label = field(id).closest('label')?.firstChild?.textContent?.trim() || id;
      throw new Error(`${label} is empty`);
    }
  }
}

/**
 * @param {string} formId
 * @param {() => Promise<void>} fn
 */
function onSubmit(formId, fn) {
  const form = q(`#${formId}`, HTMLFormElement);
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const submitter = /** @type {SubmitEvent} */ (e).submitter;
    const button = submitter instanceof HTMLButtonElement ? submitter : form.querySelector('button.primary');
    act(button instanceof HTMLButtonElement ? button : null, fn);
  });
}

/**
 * @param {string} id
 * @param {() => Promise<void>} fn
 */
function onClick(id, fn) {
  const button = q(`#${id}`, HTMLButtonElement);
  button.addEventListener('click', () => act(button, fn));
}

/** Wires the screen and loads the account status. */
export async function initAccount() {
  for (const link of all('[data-go]')) {
    link.addEventListener('click', () => { if (isView(link.dataset.go)) show(link.dataset.go); });
  }
  onSubmit('account-login', async () => {
    required('login-username', 'login-password');
    const username = value('login-username');
    /** @type {AccountStatus} */
    let status;
    try {
      status = await api.logIn(username, field('login-password').value);
    } catch (e) {
      const err = toCommandError(e);
      if (err.kind !== 'not_confirmed') throw err;
      // Offer to confirm: the code form, with the username filled in.
      field('confirm-username').value = username;
      show('confirm');
      q('#account-error').textContent = err.message;
      return;
    }
    field('login-password').value = '';
    setAccount(status);
    show('signed-in');
    toast(`Signed in as ${status.username}`);
  });
  onClick('login-google', async () => {
    q('#login-browser').hidden = false;
    try {
      const status = await api.logInWith('Google');
      setAccount(status);
      show('signed-in');
      toast(`Signed in as ${status.username}`);
    } finally {
      q('#login-browser').hidden = true;
    }
  });
  onSubmit('account-signup', async () => {
    required('signup-email', 'signup-username', 'signup-password');
    const username = value('signup-username');
    await api.signUp(value('signup-email'), username, field('signup-password').value);
    field('signup-password').value = '';
    field('confirm-username').value = username;
    field('login-username').value = username;
    show('confirm');
  });
  onSubmit('account-confirm', async () => {
    required('confirm-username', 'confirm-code');
    await api.confirmSignUp(value('confirm-username'), value('confirm-code'));
    field('login-username').value = value('confirm-username');
    field('confirm-code').value = '';
    show('login');
    toast('Account confirmed: log in now');
  });
  onClick('confirm-resend', async () => {
    required('confirm-username');
    await api.resendCode(value('confirm-username'));
    toast('A new code is on its way');
  });
  onClick('forgot-send', async () => {
    required('forgot-username');
    await api.forgotPassword(value('forgot-username'));
    toast('If the account exists, a reset code was emailed');
  });
  onSubmit('account-forgot', async () => {
    required('forgot-username', 'forgot-code', 'forgot-password');
    await api.resetPassword(value('forgot-username'), value('forgot-code'), field('forgot-password').value);
    field('forgot-password').value = '';
    field('login-username').value = value('forgot-username');
    show('login');
    toast('Password changed: log in with the new one');
  });
  onClick('account-sign-out', async () => {
    q('#api-key-made').hidden = true;
    q('#api-key-value').textContent = '';
    setAccount(await api.signOut());
    show('login');
    toast('Signed out');
  });
  onSubmit('api-key-form', async () => {
    required('api-key-name');
    const made = await api.createApiKey(value('api-key-name'));
    field('api-key-name').value = '';
    q('#api-key-value').textContent = made.key;
    q('#api-key-made').hidden = false;
    await loadKeys();
  });
  onClick('api-key-copy', async () => {
    await navigator.clipboard.writeText(q('#api-key-value').textContent || '');
    toast('Key copied');
  });
  onSubmit('service-form', async () => {
    setAccount(await api.setCloudSettings({
      api_url: field('service-api-url').value,
      region: field('service-region').value,
      user_pool_id: field('service-pool').value,
      client_id: field('service-client').value,
      cognito_endpoint: field('service-endpoint').value,
      hosted_ui_domain: field('service-domain').value,
    }));
    toast('Cloud service saved');
    home();
  });
  on(APP_EVENTS.ACCOUNT_CHANGED, render);
  on(APP_EVENTS.SCREEN_SHOWN, (name) => {
    if (name !== 'account') return;
    const current = root.dataset.view;
    // Keep a form in progress (confirm, reset); otherwise show what fits the account state.
    if (!current || current === 'login' || current === 'signed-in') home();
  });
  home();
  setAccount(await api.accountStatus());
  home();
}
