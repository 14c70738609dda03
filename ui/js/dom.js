// @ts-check
// Small DOM helpers shared by the screens: scoped queries, element building, modal dialogs
// that give focus back, the toast, and number formats.
import { errorMessage } from './api.js';

/**
 * Typed queries inside one root element: a screen or a component looks only inside its own.
 * `q(selector)` is an HTMLElement; `q(selector, HTMLInputElement)` checks and narrows the type.
 * A missing element is a bug in the markup, so it throws at once.
 * @param {ParentNode} root
 */
export function scoped(root) {
  /**
   * @template {Element} [T=HTMLElement]
   * @param {string} selector
   * @param {{ new (): T, prototype: T }} [type]
   * @returns {T}
   */
  function q(selector, type) {
    const node = root.querySelector(selector);
    const want = type || HTMLElement;
    if (!(node instanceof want)) throw new Error(`no ${want.name} matches ${selector}`);
    return /** @type {T} */ (node);
  }
  /**
   * @template {Element} [T=HTMLElement]
   * @param {string} selector
   * @param {{ new (): T, prototype: T }} [type]
   * @returns {T[]}
   */
  function all(selector, type) {
    const want = type || HTMLElement;
    return /** @type {T[]} */ ([...root.querySelectorAll(selector)].filter((n) => n instanceof want));
  }
  return { q, all };
}

/**
 * The element with this id, checked; for the app frame (dialogs, rail) only: screens use `scoped`.
 * @template {HTMLElement} [T=HTMLElement]
 * @param {string} id
 * @param {{ new (): T, prototype: T }} [type]
 * @returns {T}
 */
export function byId(id, type) {
  const node = document.getElementById(id);
  const want = type || HTMLElement;
  if (!(node instanceof want)) throw new Error(`no ${want.name} with id ${id}`);
  return /** @type {T} */ (node);
}

/** @typedef {Node | string | number | null | undefined | false} Child */

/**
 * Creates an element with properties (`dataset`, DOM properties, else attributes) and children.
 * @template {keyof HTMLElementTagNameMap} K
 * @param {K} tag
 * @param {Record<string, unknown>} [props]
 * @param {...Child} children
 * @returns {HTMLElementTagNameMap[K]}
 */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  /** @type {Record<string, unknown>} */
  const target = /** @type {any} */ (node);
  for (const [key, value] of Object.entries(props)) {
    if (key === 'dataset') Object.assign(node.dataset, value);
    else if (key in node) target[key] = value;
    else node.setAttribute(key, String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    node.append(typeof child === 'number' ? String(child) : child);
  }
  return node;
}

/**
 * Opens a dialog modally (the browser traps focus inside and Esc closes it) and gives the focus
 * back to where it was when the dialog closes.
 * @param {HTMLDialogElement} dialog
 */
export function openModal(dialog) {
  if (dialog.open) return;
  const before = document.activeElement;
  dialog.showModal();
  dialog.addEventListener('close', () => {
    if (before instanceof HTMLElement && before.isConnected && !before.closest('[hidden]')) before.focus();
  }, { once: true });
}

/** Whether a modal dialog is open (then the screens' keys are the dialog's). */
export function modalOpen() {
  return document.querySelector('dialog[open]') !== null;
}

/** @type {ReturnType<typeof setTimeout> | undefined} */
let toastTimer;

/**
 * Shows a short message. One at a time: a new one replaces the last; it goes after a few
 * seconds (errors stay longer) or when clicked.
 * @param {unknown} message a string or an error
 * @param {'info' | 'error'} [kind]
 */
export function toast(message, kind = 'info') {
  const box = byId('toast');
  const text = typeof message === 'string' ? message : errorMessage(message);
  clearTimeout(toastTimer);
  box.className = `toast ${kind}`;
  box.setAttribute('role', kind === 'error' ? 'alert' : 'status');
  box.textContent = text;
  box.hidden = false;
  toastTimer = setTimeout(() => { box.hidden = true; }, kind === 'error' ? 8000 : 4000);
}

/** Hides the toast now. */
export function dismissToast() {
  clearTimeout(toastTimer);
  byId('toast').hidden = true;
}

/**
 * Human-readable byte count (binary units).
 * @param {number} n
 */
export function formatBytes(n) {
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  let v = Number(n) || 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i += 1; }
  return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`;
}

/**
 * A download size as model pages quote it (decimal gigabytes).
 * @param {number} bytes
 */
export function formatGigabytes(bytes) {
  return `${(bytes / 1e9).toFixed(1)} GB`;
}

/**
 * Time left: "about 12 s left" under a minute, then "1:05 left", "1:02:09 left".
 * @param {number | null | undefined} seconds
 */
export function formatEta(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds) || seconds < 0) return '';
  const s = Math.ceil(seconds);
  if (s < 60) return `about ${s} s left`;
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  return h ? `${h}:${String(m).padStart(2, '0')}:${ss} left` : `${m}:${ss} left`;
}

/**
 * "1 image", "3 images".
 * @param {number} n
 * @param {string} word
 */
export function plural(n, word) {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}
