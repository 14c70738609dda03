// Small DOM helpers shared by the screens.

/** The element with this id. */
export const $ = (id) => document.getElementById(id);

/** Creates an element with properties and children. */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === 'dataset') Object.assign(node.dataset, value);
    else if (key in node) node[key] = value;
    else node.setAttribute(key, value);
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

/** Shows a short message; errors stay longer. */
export function toast(message, kind = 'info') {
  const node = el('div', { className: `toast ${kind}`, role: kind === 'error' ? 'alert' : 'status' }, String(message));
  $('toasts').append(node);
  setTimeout(() => node.remove(), kind === 'error' ? 9000 : 4000);
}

/** Human-readable byte count. */
export function formatBytes(n) {
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  let v = Number(n) || 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i += 1; }
  return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`;
}

/** Asks a yes/no question in the confirm dialog; resolves to true on "ok". */
export function confirmDialog(title, message, okLabel = 'Delete') {
  const dialog = $('confirm-dialog');
  $('confirm-title').textContent = title;
  $('confirm-message').textContent = message;
  $('confirm-ok').textContent = okLabel;
  dialog.returnValue = '';
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => resolve(dialog.returnValue === 'ok'), { once: true });
  });
}
