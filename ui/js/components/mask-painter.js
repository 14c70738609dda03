// @ts-check
// The mask painter (a modal dialog): the image to start from, scaled to fit, under a canvas of
// the image's own resolution on which the user paints what to repaint (white) with a round
// brush, or erases it; invert, clear and undo (Ctrl/Cmd+Z). "Use mask" keeps the mask in the
// library as a PNG and resolves with it; Cancel or Esc resolve with null.
import { api, convertFile } from '../api.js';
import { byId, openModal, scoped, toast } from '../dom.js';

/** @typedef {import('../types.js').InputInfo} InputInfo */

/** Strokes the undo stack keeps at most, and the memory its snapshots may take. */
const UNDO_DEPTH = 30;
const UNDO_BYTES = 256 * 1024 * 1024;

const dialog = byId('mask-dialog', HTMLDialogElement);
const { q } = scoped(dialog);
const canvas = q('#mask-canvas', HTMLCanvasElement);
const image = q('#mask-image', HTMLImageElement);
const brush = q('#mask-brush', HTMLInputElement);
const ctx = /** @type {CanvasRenderingContext2D} */ (canvas.getContext('2d', { willReadFrequently: true }));

/** @type {{ erase: boolean, undo: ImageData[], last: [number, number] | null, done: ((mask: InputInfo | null) => void) | null }} */
const paint = { erase: false, undo: [], last: null, done: null };

/**
 * The canvas pixel under a pointer event.
 * @param {PointerEvent} e
 * @returns {[number, number]}
 */
function at(e) {
  const box = canvas.getBoundingClientRect();
  return [(e.clientX - box.left) * (canvas.width / box.width), (e.clientY - box.top) * (canvas.height / box.height)];
}

/** The brush diameter in image pixels. */
const diameter = () => Number(brush.value);

/**
 * Paints (or erases) a round stroke from the last point to `to`.
 * @param {[number, number]} to
 */
function stroke(to) {
  const from = paint.last || to;
  ctx.strokeStyle = ctx.fillStyle = paint.erase ? '#000' : '#fff';
  ctx.lineWidth = diameter();
  ctx.lineCap = 'round';
  ctx.beginPath();
  ctx.moveTo(from[0], from[1]);
  ctx.lineTo(to[0], to[1]);
  ctx.stroke();
  ctx.beginPath();
  ctx.arc(to[0], to[1], diameter() / 2, 0, Math.PI * 2);
  ctx.fill();
  paint.last = to;
}

function remember() {
  paint.undo.push(ctx.getImageData(0, 0, canvas.width, canvas.height));
  // A large image keeps fewer snapshots (a 4096² one 4, an 8192² one just the last).
  const depth = Math.max(1, Math.min(UNDO_DEPTH, Math.floor(UNDO_BYTES / (canvas.width * canvas.height * 4))));
  while (paint.undo.length > depth) paint.undo.shift();
  q('#mask-undo', HTMLButtonElement).disabled = false;
}

function undo() {
  const before = paint.undo.pop();
  if (before) ctx.putImageData(before, 0, 0);
  q('#mask-undo', HTMLButtonElement).disabled = paint.undo.length === 0;
}

function clear() {
  remember();
  ctx.fillStyle = '#000';
  ctx.fillRect(0, 0, canvas.width, canvas.height);
}

function invert() {
  remember();
  const data = ctx.getImageData(0, 0, canvas.width, canvas.height);
  for (let i = 0; i < data.data.length; i += 4) {
    const v = 255 - data.data[i];
    data.data[i] = data.data[i + 1] = data.data[i + 2] = v;
    data.data[i + 3] = 255;
  }
  ctx.putImageData(data, 0, 0);
}

/** Shows the image and the canvas as large as the stage allows (small images scaled up too). */
function fit() {
  const stage = q('.mask-stage');
  const scale = Math.min(stage.clientWidth / canvas.width, stage.clientHeight / canvas.height);
  if (!Number.isFinite(scale) || scale <= 0) return;
  for (const node of [image, canvas]) {
    node.style.width = `${Math.floor(canvas.width * scale)}px`;
    node.style.height = `${Math.floor(canvas.height * scale)}px`;
  }
}

/** @param {boolean} erase */
function setTool(erase) {
  paint.erase = erase;
  q('#mask-paint').setAttribute('aria-pressed', String(!erase));
  q('#mask-erase').setAttribute('aria-pressed', String(erase));
}

/** @param {InputInfo | null} mask */
function finish(mask) {
  const done = paint.done;
  paint.done = null;
  if (dialog.open) dialog.close();
  done?.(mask);
}

async function save() {
  const data = canvas.toDataURL('image/png').split(',')[1] || '';
  try {
    finish(await api.keepInput({ dataBase64: data }));
  } catch (e) { toast(e, 'error'); }
}

/**
 * Loads a picture into an image element and waits for it.
 * @param {HTMLImageElement} img
 * @param {string} src
 */
function loaded(img, src) {
  return new Promise((resolve, reject) => {
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error('the image could not be shown'));
    img.src = src;
  });
}

/**
 * Opens the painter over `source`, starting from `mask` when there is one.
 * @param {InputInfo} source
 * @param {InputInfo | null} mask
 * @returns {Promise<InputInfo | null>} the kept mask, or null when cancelled
 */
export async function paintMask(source, mask) {
  canvas.width = source.width;
  canvas.height = source.height;
  ctx.fillStyle = '#000';
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  paint.undo = [];
  q('#mask-undo', HTMLButtonElement).disabled = true;
  setTool(false);
  brush.max = String(Math.max(8, Math.round(Math.max(source.width, source.height) / 2)));
  if (Number(brush.value) > Number(brush.max)) brush.value = brush.max;
  q('#mask-brush-value').textContent = brush.value;
  q('#mask-size').textContent = `${source.width}×${source.height}`;
  try {
    await loaded(image, convertFile(source.path));
    if (mask) {
      // The kept mask, resized to the image if it was painted for another size.
      const old = await loaded(new Image(), convertFile(mask.path));
      ctx.drawImage(old, 0, 0, canvas.width, canvas.height);
    }
  } catch (e) { toast(e, 'error'); }
  return new Promise((resolve) => {
    paint.done = resolve;
    openModal(dialog);
    fit();
  });
}

/** Wires the painter's canvas, tools and keys. */
export function initMaskPainter() {
  canvas.addEventListener('pointerdown', (e) => {
    e.preventDefault();
    try {
      canvas.setPointerCapture(e.pointerId);
    } catch {
      // A pointer the platform does not track (synthetic events): strokes still draw.
    }
    remember();
    paint.last = null;
    stroke(at(e));
  });
  canvas.addEventListener('pointermove', (e) => {
    if (paint.last) stroke(at(e));
  });
  const end = () => { paint.last = null; };
  canvas.addEventListener('pointerup', end);
  canvas.addEventListener('pointercancel', end);
  brush.addEventListener('input', () => { q('#mask-brush-value').textContent = brush.value; });
  q('#mask-paint').addEventListener('click', () => setTool(false));
  q('#mask-erase').addEventListener('click', () => setTool(true));
  q('#mask-invert').addEventListener('click', invert);
  q('#mask-clear').addEventListener('click', clear);
  q('#mask-undo').addEventListener('click', undo);
  q('#mask-cancel').addEventListener('click', () => finish(null));
  q('#mask-save').addEventListener('click', save);
  dialog.addEventListener('keydown', (e) => {
    if (e.key === 'z' && (e.ctrlKey || e.metaKey)) { e.preventDefault(); undo(); }
  });
  dialog.addEventListener('close', () => { if (paint.done) finish(null); });
  window.addEventListener('resize', () => { if (dialog.open) fit(); });
}
