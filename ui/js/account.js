// The account dialog: log in, sign up, confirm, forgot password, signed-in state and sign out,
// and the cloud service settings. Announces `account-changed` with the status from the core.
import { api } from './api.js';
import { $, toast } from './dom.js';
import { state, emit } from './state.js';

const TITLES = { login: 'Log in', signup: 'Create an account', confirm: 'Confirm your account', forgot: 'Reset your password', 'signed-in': 'Account' };

function show(view) {
  for (const node of document.querySelectorAll('.account-view')) node.hidden = node.dataset.view !== view;
  $('account-title').textContent = TITLES[view];
  $('account-dialog').dataset.view = view;
  $('account-error').textContent = '';
}

function applyStatus(status) {
  state.account = status;
  $('account-label').textContent = status.username ? status.username : 'Log in';
  $('account-username').textContent = status.username || '';
  $('account-problem').hidden = status.configured;
  $('account-problem').textContent = status.problem || '';
  $('account-service').open = !status.configured;
  const s = status.settings;
  $('service-api-url').value = s.api_url;
  $('service-region').value = s.region;
  $('service-pool').value = s.user_pool_id;
  $('service-client').value = s.client_id;
  $('service-endpoint').value = s.cognito_endpoint;
  emit('account-changed', status);
}

/** Runs an account action with the form's button disabled; shows its error inline. */
async function act(button, fn) {
  $('account-error').textContent = '';
  button.disabled = true;
  try {
    await fn();
  } catch (e) {
    $('account-error').textContent = String(e);
  } finally {
    button.disabled = false;
  }
}

function required(...ids) {
  for (const id of ids) {
    if (!$(id).value.trim()) {
      const label = $(id).closest('label')?.firstChild?.textContent?.trim() || id;
      throw new Error(`${label} is empty`);
    }
  }
}

function onSubmit(formId, fn) {
  $(formId).addEventListener('submit', (e) => {
    e.preventDefault();
    act(e.submitter || $(formId).querySelector('.primary'), fn);
  });
}

/** Opens the dialog on the view that fits the current state. */
export function openAccount() {
  show(state.account?.username ? 'signed-in' : 'login');
  $('account-dialog').showModal();
}

/** Wires the dialog and loads the account status. */
export async function initAccount() {
  $('open-account').addEventListener('click', openAccount);
  $('account-close').addEventListener('click', () => $('account-dialog').close());
  for (const link of document.querySelectorAll('#account-dialog [data-go]')) {
    link.addEventListener('click', () => show(link.dataset.go));
  }
  onSubmit('account-login', async () => {
    required('login-username', 'login-password');
    const username = $('login-username').value.trim();
    let status;
    try {
      status = await api.logIn(username, $('login-password').value);
    } catch (e) {
      if (!String(e).includes('not confirmed')) throw e;
      // Offer to confirm: the code form, with the username filled in.
      $('confirm-username').value = username;
      show('confirm');
      $('account-error').textContent = String(e);
      return;
    }
    $('login-password').value = '';
    applyStatus(status);
    show('signed-in');
    toast(`Signed in as ${status.username}`);
  });
  onSubmit('account-signup', async () => {
    required('signup-email', 'signup-username', 'signup-password');
    const username = $('signup-username').value.trim();
    await api.signUp($('signup-email').value.trim(), username, $('signup-password').value);
    $('signup-password').value = '';
    $('confirm-username').value = username;
    $('login-username').value = username;
    show('confirm');
  });
  onSubmit('account-confirm', async () => {
    required('confirm-username', 'confirm-code');
    await api.confirmSignUp($('confirm-username').value.trim(), $('confirm-code').value.trim());
    $('login-username').value = $('confirm-username').value.trim();
    $('confirm-code').value = '';
    show('login');
    toast('Account confirmed: log in now');
  });
  $('confirm-resend').addEventListener('click', () => act($('confirm-resend'), async () => {
    required('confirm-username');
    await api.resendCode($('confirm-username').value.trim());
    toast('A new code is on its way');
  }));
  $('forgot-send').addEventListener('click', () => act($('forgot-send'), async () => {
    required('forgot-username');
    await api.forgotPassword($('forgot-username').value.trim());
    toast('If the account exists, a reset code was emailed');
  }));
  onSubmit('account-forgot', async () => {
    required('forgot-username', 'forgot-code', 'forgot-password');
    await api.resetPassword($('forgot-username').value.trim(), $('forgot-code').value.trim(), $('forgot-password').value);
    $('forgot-password').value = '';
    $('login-username').value = $('forgot-username').value.trim();
    show('login');
    toast('Password changed: log in with the new one');
  });
  $('account-sign-out').addEventListener('click', () => act($('account-sign-out'), async () => {
    applyStatus(await api.signOut());
    show('login');
    toast('Signed out');
  }));
  onSubmit('service-form', async () => {
    applyStatus(await api.setCloudSettings({
      api_url: $('service-api-url').value,
      region: $('service-region').value,
      user_pool_id: $('service-pool').value,
      client_id: $('service-client').value,
      cognito_endpoint: $('service-endpoint').value,
    }));
    toast('Cloud service saved');
    show(state.account?.username ? 'signed-in' : 'login');
  });
  applyStatus(await api.accountStatus());
}
