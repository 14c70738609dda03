// @ts-check
// The modal progress of an import, an export or an upscale (cancellable for the latter two).
import { byId, openModal, scoped } from '../dom.js';

/** @typedef {import('../types.js').TransferProgress} TransferProgress */

const dialog = byId('progress-dialog', HTMLDialogElement);
const { q } = scoped(dialog);
/** @type {(() => void) | null} */
let onCancel = null;

/**
 * Opens the dialog; `cancel` (when given) runs on the Cancel button.
 * @param {string} title
 * @param {(() => void) | null} cancel
 */
export function showProgress(title, cancel) {
  onCancel = cancel;
  q('#progress-title').textContent = title;
  const bar = q('#progress-bar', HTMLProgressElement);
  bar.max = 1;
  bar.value = 0;
  q('#progress-text').textContent = 'Starting…';
  const button = q('#progress-cancel', HTMLButtonElement);
  button.hidden = !cancel;
  button.disabled = false;
  openModal(dialog);
}

/** @param {TransferProgress} p */
export function updateProgress({ done, total, current }) {
  const bar = q('#progress-bar', HTMLProgressElement);
  bar.max = Math.max(total, 1);
  bar.value = done;
  q('#progress-text').textContent = current ? `${done} of ${total} · ${current}` : `${done} of ${total}`;
}

/**
 * Shows progress as a fraction (0–1) with its own text, for work not counted in steps.
 * @param {number} fraction @param {string} text
 */
export function updateFraction(fraction, text) {
  const bar = q('#progress-bar', HTMLProgressElement);
  bar.max = 1;
  bar.value = Math.min(Math.max(fraction, 0), 1);
  q('#progress-text').textContent = text;
}

export function closeProgress() {
  if (dialog.open) dialog.close();
}

/** Wires the Cancel button; Esc does not close a running transfer. */
export function initProgressDialog() {
  q('#progress-cancel').addEventListener('click', () => {
    q('#progress-cancel', HTMLButtonElement).disabled = true;
    q('#progress-text').textContent = 'Cancelling…';
    onCancel?.();
  });
  dialog.addEventListener('cancel', (e) => e.preventDefault());
}
