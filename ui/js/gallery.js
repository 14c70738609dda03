// The gallery: a thumbnail grid loaded a page at a time as it scrolls, with search, favourites
// and multi-select. Tiles skip layout and paint while off screen, so 10,000 images stay smooth.
import { api, fileUrl } from './api.js';
import { $, el, toast, confirmDialog } from './dom.js';
import { state, on, emit, currentProject } from './state.js';
import { openViewer } from './viewer.js';

const PAGE = 120;
let cursor = null;
let loading = false;
let exhausted = false;
let generation = 0;
let lastClicked = null;
const tiles = new Map();

/** Clears the grid and loads the first page again. */
export function reloadGallery() {
  generation += 1;
  cursor = null;
  exhausted = false;
  loading = false;
  tiles.clear();
  $('gallery').replaceChildren();
  $('gallery-empty').hidden = true;
  updateSelectionBar();
  loadMore();
}

async function loadMore() {
  const project = currentProject();
  if (!project || loading || exhausted) return;
  loading = true;
  const mine = generation;
  try {
    const page = await api.listImages(project.id, {
      search: state.search || null,
      favorites_only: state.favoritesOnly,
      cursor,
      limit: PAGE,
    });
    if (mine !== generation) return;
    cursor = page.next_cursor;
    exhausted = !cursor;
    $('gallery').append(...page.images.map(tile));
    $('gallery-empty').hidden = tiles.size > 0;
  } catch (e) {
    toast(e, 'error');
  } finally {
    if (mine === generation) loading = false;
  }
  if (mine === generation && !exhausted && sentinelVisible()) loadMore();
}

function sentinelVisible() {
  const box = $('gallery-sentinel').getBoundingClientRect();
  return box.top < window.innerHeight + 800;
}

function tile(image) {
  const img = el('img', { src: fileUrl(image.thumb), alt: image.prompt || image.original_name, loading: 'lazy', decoding: 'async' });
  const star = el('button', { className: 'tile-star', title: 'Favorite', ariaLabel: 'Favorite' }, image.favorite ? '★' : '☆');
  const node = el('figure', {
    className: 'tile',
    dataset: { imageId: String(image.id) },
    tabIndex: 0,
    title: image.prompt || image.original_name,
  }, img, star, el('figcaption', {}, image.prompt || image.original_name));
  node.classList.toggle('favorite', image.favorite);
  node.classList.toggle('selected', state.selection.has(image.id));
  star.addEventListener('click', async (e) => {
    e.stopPropagation();
    try {
      const now = await api.toggleFavorite(image.id);
      image.favorite = now;
      star.textContent = now ? '★' : '☆';
      node.classList.toggle('favorite', now);
    } catch (err) { toast(err, 'error'); }
  });
  node.addEventListener('click', (e) => onTileClick(e, image));
  node.addEventListener('keydown', (e) => { if (e.key === 'Enter') openViewer(image.id, neighbours); });
  tiles.set(image.id, node);
  return node;
}

function neighbours(id, step) {
  const ids = [...tiles.keys()];
  const next = ids[ids.indexOf(id) + step];
  return next === undefined ? null : next;
}

function onTileClick(event, image) {
  const multi = event.ctrlKey || event.metaKey;
  if (event.shiftKey && lastClicked !== null) {
    const ids = [...tiles.keys()];
    const [a, b] = [ids.indexOf(lastClicked), ids.indexOf(image.id)].sort((x, y) => x - y);
    ids.slice(a, b + 1).forEach((id) => state.selection.add(id));
  } else if (multi) {
    if (state.selection.has(image.id)) state.selection.delete(image.id);
    else state.selection.add(image.id);
  } else if (state.selection.size) {
    state.selection.clear();
  } else {
    openViewer(image.id, neighbours);
    return;
  }
  lastClicked = image.id;
  for (const [id, node] of tiles) node.classList.toggle('selected', state.selection.has(id));
  updateSelectionBar();
}

function updateSelectionBar() {
  const n = state.selection.size;
  $('selection-bar').hidden = n === 0;
  $('selection-count').textContent = `${n} selected`;
}

async function deleteSelection() {
  const ids = [...state.selection];
  if (!await confirmDialog('Delete images?', `Delete ${ids.length} image(s) from this project? This cannot be undone.`)) return;
  try {
    await api.deleteImages(ids);
    state.selection.clear();
    toast(`Deleted ${ids.length} image(s)`);
    emit('images-changed');
    reloadGallery();
  } catch (e) { toast(e, 'error'); }
}

async function favoriteSelection() {
  for (const id of state.selection) {
    const node = tiles.get(id);
    if (node && !node.classList.contains('favorite')) {
      try {
        await api.toggleFavorite(id);
        node.classList.add('favorite');
        node.querySelector('.tile-star').textContent = '★';
      } catch (e) { toast(e, 'error'); return; }
    }
  }
}

async function moveSelection() {
  const select = $('selection-move');
  const target = Number(select.value);
  select.value = '';
  if (!target) return;
  const ids = [...state.selection];
  const name = state.projects.find((p) => p.id === target)?.name || 'the project';
  try {
    await api.moveImages(ids, target);
    state.selection.clear();
    toast(`Moved ${ids.length} image(s) to “${name}”`);
    emit('images-changed');
    reloadGallery();
  } catch (e) { toast(e, 'error'); }
}

/** Lists the other projects as move targets. */
function fillMoveTargets() {
  const others = state.projects.filter((p) => p.id !== state.currentId);
  $('selection-move').replaceChildren(
    el('option', { value: '' }, others.length ? 'Move to…' : 'No other project'),
    ...others.map((p) => el('option', { value: String(p.id) }, p.name)),
  );
  $('selection-move').disabled = !others.length;
}

/** Wires search, filters, selection actions and infinite scrolling. */
export function initGallery() {
  let searchTimer;
  $('search').addEventListener('input', () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => { state.search = $('search').value.trim(); reloadGallery(); }, 250);
  });
  $('favorites-only').addEventListener('change', () => { state.favoritesOnly = $('favorites-only').checked; reloadGallery(); });
  $('selection-clear').addEventListener('click', () => {
    state.selection.clear();
    for (const node of tiles.values()) node.classList.remove('selected');
    updateSelectionBar();
  });
  $('selection-delete').addEventListener('click', deleteSelection);
  $('selection-favorite').addEventListener('click', favoriteSelection);
  $('selection-move').addEventListener('change', moveSelection);
  on('projects-loaded', fillMoveTargets);
  new IntersectionObserver((entries) => {
    if (entries.some((e) => e.isIntersecting)) loadMore();
  }, { rootMargin: '800px' }).observe($('gallery-sentinel'));
  on('project-changed', reloadGallery);
  on('gallery-reload', reloadGallery);
  on('favorite-changed', ({ id, favorite }) => {
    const node = tiles.get(id);
    if (!node) return;
    node.classList.toggle('favorite', favorite);
    node.querySelector('.tile-star').textContent = favorite ? '★' : '☆';
  });
}
