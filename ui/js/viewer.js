// The image viewer: the full image beside a read-only parameters panel.
import { api, fileUrl } from './api.js';
import { $, el, toast, formatBytes } from './dom.js';
import { emit } from './state.js';
import { reuseRecipe } from './generate.js';

let current = null;
let step = () => null;

const FIELDS = [
  ['Prompt', (r) => r.prompt],
  ['Negative prompt', (r) => r.negative_prompt],
  ['Styles', (r) => (r.styles || []).join(', ')],
  ['Model', (r) => r.model],
  ['Scheduler', (r) => r.scheduler],
  ['Steps', (r) => r.steps],
  ['Guidance', (r) => r.guidance],
  ['Seed', (r) => r.seed],
  ['Size', (r) => (r.width && r.height ? `${r.width}×${r.height}` : null)],
  ['Backend', (r) => r.backend],
  ['Cloud job', (r) => r.job_id],
];

/** Opens the viewer on an image; `neighbour(id, ±1)` gives the previous/next id. */
export async function openViewer(id, neighbour) {
  step = neighbour || (() => null);
  try {
    current = await api.getImage(id);
  } catch (e) {
    toast(e, 'error');
    return;
  }
  const r = current.recipe;
  $('viewer-img').src = fileUrl(current.file);
  $('viewer-img').alt = r.prompt || current.original_name;
  $('viewer-title').textContent = current.original_name;
  const rows = FIELDS.map(([label, get]) => [label, get(r)])
    .filter(([, v]) => v !== null && v !== undefined && v !== '')
    .concat([
      ['Pixels', `${current.width}×${current.height} ${current.format.toUpperCase()}`],
      ['File size', formatBytes(current.bytes)],
      ['Origin', current.origin],
      ['Added', new Date(current.created_at).toLocaleString()],
      ['SHA-256', current.sha256],
    ]);
  $('viewer-recipe').replaceChildren(...rows.flatMap(([label, value]) => [
    el('dt', {}, label),
    el('dd', { dataset: { field: label.toLowerCase().replace(/[^a-z0-9]+/g, '-') } }, String(value)),
  ]));
  $('viewer-favorite').textContent = current.favorite ? '★ Favorite' : '☆ Favorite';
  $('viewer-copy-prompt').disabled = !r.prompt;
  if (!$('viewer').open) $('viewer').showModal();
}

async function copyPrompt() {
  if (!current) return;
  try {
    await navigator.clipboard.writeText(current.recipe.prompt);
    toast('Prompt copied');
  } catch {
    // Some WebViews refuse the async clipboard; fall back to a selection copy.
    const area = el('textarea', { value: current.recipe.prompt });
    document.body.append(area);
    area.select();
    const ok = document.execCommand('copy');
    area.remove();
    toast(ok ? 'Prompt copied' : 'Could not reach the clipboard', ok ? 'info' : 'error');
  }
}

async function toggleFavorite() {
  try {
    const now = await api.toggleFavorite(current.id);
    current.favorite = now;
    $('viewer-favorite').textContent = now ? '★ Favorite' : '☆ Favorite';
    emit('favorite-changed', { id: current.id, favorite: now });
  } catch (e) { toast(e, 'error'); }
}

/** Wires the viewer's buttons and keys. */
export function initViewer() {
  $('viewer-close').addEventListener('click', () => $('viewer').close());
  $('viewer-copy-prompt').addEventListener('click', copyPrompt);
  $('viewer-reuse').addEventListener('click', () => {
    if (!current) return;
    reuseRecipe(current.recipe);
    $('viewer').close();
    toast('Parameters copied into the generate panel');
  });
  $('viewer-favorite').addEventListener('click', toggleFavorite);
  $('viewer').addEventListener('keydown', (e) => {
    if (!current) return;
    const next = e.key === 'ArrowRight' ? step(current.id, 1) : e.key === 'ArrowLeft' ? step(current.id, -1) : null;
    if (next !== null) openViewer(next, step);
  });
}
