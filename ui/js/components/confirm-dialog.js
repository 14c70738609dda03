// @ts-check
// A yes/no question in a modal dialog.
import { byId, openModal, scoped } from '../dom.js';

/**
 * Asks a question; resolves to true when the user confirms.
 * @param {string} title
 * @param {string} message
 * @param {string} [okLabel]
 * @returns {Promise<boolean>}
 */
export function confirmDialog(title, message, okLabel = 'Delete') {
  const dialog = byId('confirm-dialog', HTMLDialogElement);
  const { q } = scoped(dialog);
  q('#confirm-title').textContent = title;
  q('#confirm-message').textContent = message;
  q('#confirm-ok').textContent = okLabel;
  dialog.returnValue = '';
  openModal(dialog);
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => resolve(dialog.returnValue === 'ok'), { once: true });
  });
}
