// @ts-check
// The image viewer (a modal dialog): the image scaled to fit beside its recipe, with favourite,
// copy prompt and "reuse parameters" (announced as an app event; Create takes it). ArrowLeft /
// ArrowRight move through the opener's list, Esc closes.
import { api, fileUrl, listen } from '../api.js';
import { APP_EVENTS, TAURI_EVENTS, emit, on } from '../events.js';
import { byId, el, formatBytes, formatEta, openModal, scoped, toast } from '../dom.js';
import { imagesAdded, state } from '../store.js';
import { showProgress, updateProgress, updateFraction, closeProgress } from './progress-dialog.js';

/** @typedef {import('../types.js').ImageDetail} ImageDetail */
/** @typedef {import('../types.js').Recipe} Recipe */

/**
 * Gives the id `step` places from `id` in the opener's list (±1), or null at either end.
 * @typedef {(id: number, step: number) => number | null} Neighbour
 */

/** @type {[string, (r: Recipe) => unknown][]} */
const FIELDS = [
  ['Prompt', (r) => r.prompt],
  ['Negative prompt', (r) => r.negative_prompt],
  ['Styles', (r) => (r.styles || []).join(', ')],
  ['Model', (r) => r.model],
  // Weights as written in `<lora:name:weight>` (an f32 read back as 0.699999988 shows as 0.7).
  ['LoRAs', (r) => (r.loras || []).map((l) => `${l.name} ${Number(Number(l.weight).toPrecision(6))}`).join(', ')],
  ['Scheduler', (r) => r.scheduler],
  ['Steps', (r) => r.steps],
  ['Guidance', (r) => r.guidance],
  ['Seed', (r) => r.seed],
  ['Size', (r) => (r.width && r.height ? `${r.width}×${r.height}` : null)],
  ['Started from', (r) => (r.source ? `${r.source.mask_sha256 ? 'inpaint' : r.source.outpaint ? `outpaint ${r.source.outpaint.join(', ')}` : 'img2img'} · strength ${r.source.strength}${r.source.paste_back !== undefined && r.source.paste_back !== null ? ' · kept pixels pasted back' : ''} · image ${r.source.image_sha256.slice(0, 12)}` : null)],
  ['Hires fix', (r) => (r.hires ? `×${r.hires.factor} · strength ${r.hires.strength}` : null)],
  ['Upscaled', (r) => (r.upscale ? `×${r.upscale.factor} (${r.upscale.upscaler})` : null)],
  ['SDXL size conditions', (r) => sizeConditions(r.size_conditions)],
  ['Backend', (r) => r.backend],
  ['Cloud job', (r) => r.job_id],
];

/**
 * SDXL's size conditions as people read sizes (width × height), e.g. "original 1024×768, crop 0,16".
 * @param {import('../types.js').SizeConditions | undefined} c
 */
function sizeConditions(c) {
  if (!c) return null;
  /** @type {string[]} */
  const parts = [];
  if (c.original_size) parts.push(`original ${c.original_size[1]}×${c.original_size[0]}`);
  if (c.crop_top_left) parts.push(`crop top ${c.crop_top_left[0]}, left ${c.crop_top_left[1]}`);
  if (c.target_size) parts.push(`target ${c.target_size[1]}×${c.target_size[0]}`);
  return parts.join(', ') || null;
}

const dialog = byId('viewer', HTMLDialogElement);
const { q } = scoped(dialog);

/** @type {{ image: ImageDetail | null, neighbour: Neighbour, loading: number }} */
const view = { image: null, neighbour: () => null, loading: 0 };

/** @param {boolean} favorite */
function showFavorite(favorite) {
  q('#viewer-favorite').textContent = favorite ? '★ Favorite' : '☆ Favorite';
  q('#viewer-favorite').setAttribute('aria-pressed', String(favorite));
}

/**
 * Opens the viewer on an image (or moves it there when open).
 * @param {number} id
 * @param {Neighbour} [neighbour]
 */
export async function openViewer(id, neighbour) {
  if (neighbour) view.neighbour = neighbour;
  const mine = ++view.loading;
  /** @type {ImageDetail} */
  let image;
  try {
    image = await api.getImage(id);
  } catch (e) {
    toast(e, 'error');
    return;
  }
  if (mine !== view.loading) return;
  view.image = image;
  const r = image.recipe;
  const img = q('#viewer-img', HTMLImageElement);
  img.src = fileUrl(image.file);
  img.alt = r.prompt || image.original_name;
  q('#viewer-title').textContent = image.original_name;
  /** @type {[string, unknown][]} */
  const rows = FIELDS.map(([label, get]) => /** @type {[string, unknown]} */ ([label, get(r)]))
    .filter(([, v]) => v !== null && v !== undefined && v !== '');
  rows.push(
    ['Pixels', `${image.width}×${image.height} ${image.format.toUpperCase()}`],
    ['File size', formatBytes(image.bytes)],
    ['Origin', image.origin],
    ['Added', new Date(image.created_at).toLocaleString()],
    ['SHA-256', image.sha256],
  );
  q('#viewer-recipe').replaceChildren(...rows.flatMap(([label, value]) => [
    el('dt', {}, label),
    el('dd', { dataset: { field: label.toLowerCase().replace(/[^a-z0-9]+/g, '-') } }, String(value)),
  ]));
  showFavorite(image.favorite);
  q('#viewer-copy-prompt', HTMLButtonElement).disabled = !r.prompt;
  q('#viewer-prev', HTMLButtonElement).disabled = view.neighbour(image.id, -1) === null;
  q('#viewer-next', HTMLButtonElement).disabled = view.neighbour(image.id, 1) === null;
  showUpscaleWhere();
  openModal(dialog);
}

/** @param {number} step */
function move(step) {
  if (!view.image) return;
  const next = view.neighbour(view.image.id, step);
  if (next !== null) openViewer(next);
}

async function copyPrompt() {
  const text = view.image?.recipe.prompt;
  if (!text) return;
  try {
    await navigator.clipboard.writeText(text);
    toast('Prompt copied');
  } catch {
    // Some WebViews refuse the async clipboard; fall back to a selection copy.
    const area = el('textarea', { value: text });
    dialog.append(area);
    area.select();
    const ok = document.execCommand('copy');
    area.remove();
    toast(ok ? 'Prompt copied' : 'Could not reach the clipboard', ok ? 'info' : 'error');
  }
}

async function toggleFavorite() {
  const image = view.image;
  if (!image) return;
  try {
    const now = await api.toggleFavorite(image.id);
    image.favorite = now;
    showFavorite(now);
    emit(APP_EVENTS.FAVORITE_CHANGED, { id: image.id, favorite: now });
  } catch (e) { toast(e, 'error'); }
}

/** Says on the Upscale buttons where they run: where Create runs jobs (its Backend). */
function showUpscaleWhere() {
  const where = state.backend === 'cloud'
    ? 'on the cloud server'
    : 'here, with the upscaler chosen in Settings';
  for (const [factor, size] of [[2, 'Twice'], [4, 'Four times']]) {
    q(`#viewer-upscale-${factor}`).title = `${size} as wide and tall (${where}), added to the project`;
  }
}

/** Whether the upscale in progress runs on the cloud server (its progress is a percentage). */
let upscalingInCloud = false;

/**
 * Adds a larger copy of the shown image to its project and shows it, made where Create runs
 * jobs; its progress shows in the progress dialog, whose Cancel stops it.
 * @param {number} factor
 */
async function upscale(factor) {
  const image = view.image;
  if (!image) return;
  const buttons = [2, 4].map((f) => q(`#viewer-upscale-${f}`, HTMLButtonElement));
  for (const b of buttons) b.disabled = true;
  upscalingInCloud = state.backend === 'cloud';
  showProgress(`Upscaling ×${factor}${upscalingInCloud ? ' in the cloud' : ''}`, () => { api.cancelUpscale(); });
  try {
    const larger = await api.upscaleImage(image.id, factor, upscalingInCloud);
    imagesAdded([larger]);
    toast(`Upscaled ×${factor}: ${larger.width}×${larger.height}, added to the project`);
    if (dialog.open) openViewer(larger.id);
  } catch (e) {
    if (/** @type {{ kind?: string }} */ (e).kind === 'cancelled') toast('Upscale cancelled');
    else toast(e, 'error');
  } finally {
    closeProgress();
    for (const b of buttons) b.disabled = false;
  }
}

/** Wires the viewer's buttons and keys, and the upscale's progress. */
export async function initViewer() {
  await listen(TAURI_EVENTS.UPSCALE_PROGRESS, ({ done, total, eta_s }) => {
    if (upscalingInCloud) updateFraction(done / Math.max(total, 1), `${Math.round((100 * done) / Math.max(total, 1))}% · on the cloud server`);
    else updateProgress({ done, total, current: done < total ? formatEta(eta_s) : 'finishing' });
  });
  q('#viewer-close').addEventListener('click', () => dialog.close());
  q('#viewer-prev').addEventListener('click', () => move(-1));
  q('#viewer-next').addEventListener('click', () => move(1));
  q('#viewer-copy-prompt').addEventListener('click', copyPrompt);
  q('#viewer-favorite').addEventListener('click', toggleFavorite);
  q('#viewer-use-input').addEventListener('click', () => {
    if (!view.image) return;
    const imageId = view.image.id;
    dialog.close();
    emit(APP_EVENTS.USE_AS_INPUT, { imageId });
  });
  for (const factor of [2, 4]) {
    q(`#viewer-upscale-${factor}`).addEventListener('click', () => upscale(factor));
  }
  q('#viewer-reuse').addEventListener('click', () => {
    if (!view.image) return;
    const recipe = view.image.recipe;
    dialog.close();
    emit(APP_EVENTS.REUSE_RECIPE, recipe);
  });
  dialog.addEventListener('keydown', (e) => {
    if (e.key === 'ArrowRight') { e.preventDefault(); move(1); }
    if (e.key === 'ArrowLeft') { e.preventDefault(); move(-1); }
    // The dialog's own Esc closes it too; closing here as well keeps it so in every WebView.
    if (e.key === 'Escape') { e.preventDefault(); dialog.close(); }
  });
  dialog.addEventListener('close', () => { view.loading += 1; });
  on(APP_EVENTS.FAVORITE_CHANGED, ({ id, favorite }) => {
    if (view.image?.id === id) { view.image.favorite = favorite; showFavorite(favorite); }
  });
}
