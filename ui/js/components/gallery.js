// @ts-check
// A thumbnail grid loaded a page at a time as it scrolls, with favourites and multi-select
// (Ctrl/Cmd-click, Shift-click), and new images added in place at the top. Tiles skip layout
// and paint while off screen, so 10,000 images stay smooth.
import { api, fileUrl } from '../api.js';
import { APP_EVENTS, emit, on } from '../events.js';
import { el, scoped, toast } from '../dom.js';
import { openViewer } from './viewer.js';

/** @typedef {import('../types.js').ImageSummary} ImageSummary */
/** @typedef {{ search: string, favoritesOnly: boolean }} GalleryQuery */

/** Images per page. */
const PAGE = 120;

/**
 * @typedef {object} Gallery
 * @property {(projectId: number | null, query: GalleryQuery) => void} load clears and loads the first page
 * @property {(images: ImageSummary[]) => void} prepend adds new images at the top (oldest first in)
 * @property {() => number[]} selection
 * @property {() => void} clearSelection
 * @property {(id: number) => void} reveal scrolls to an image and focuses it
 * @property {() => number} count tiles shown
 */

/**
 * Builds the gallery inside `root` (which holds `.gallery`, `.gallery-sentinel` and
 * `.gallery-empty`); `onSelection` runs when the selection changes.
 * @param {HTMLElement} root
 * @param {(ids: number[]) => void} onSelection
 * @returns {Gallery}
 */
export function createGallery(root, onSelection) {
  const { q } = scoped(root);
  const grid = q('.gallery');
  const sentinel = q('.gallery-sentinel');
  const empty = q('.gallery-empty');

  /**
   * @typedef {object} GalleryView
   * @property {number | null} projectId
   * @property {GalleryQuery} query
   * @property {string | null} cursor
   * @property {boolean} loading
   * @property {boolean} exhausted
   * @property {number} generation bumped on every reload; late pages of older ones are dropped
   * @property {number | null} lastClicked
   * @property {Set<number>} selected
   * @property {Map<number, HTMLElement>} tiles in display order
   * @property {number | null} pendingReveal
   */
  /** @type {GalleryView} */
  const view = {
    projectId: null,
    query: { search: '', favoritesOnly: false },
    cursor: null,
    loading: false,
    exhausted: true,
    generation: 0,
    lastClicked: null,
    selected: new Set(),
    tiles: new Map(),
    pendingReveal: null,
  };

  const order = () => [...grid.children].map((n) => Number(/** @type {HTMLElement} */ (n).dataset.imageId));

  /** @type {import('./viewer.js').Neighbour} */
  function neighbour(id, step) {
    const ids = order();
    const next = ids[ids.indexOf(id) + step];
    return next === undefined ? null : next;
  }

  function selectionChanged() {
    for (const [id, node] of view.tiles) node.classList.toggle('selected', view.selected.has(id));
    onSelection([...view.selected]);
  }

  /**
   * @param {HTMLElement} node
   * @param {boolean} favorite
   */
  function markFavorite(node, favorite) {
    node.classList.toggle('favorite', favorite);
    const star = node.querySelector('.tile-star');
    if (star) {
      star.textContent = favorite ? '★' : '☆';
      star.setAttribute('aria-pressed', String(favorite));
    }
  }

  /**
   * @param {MouseEvent} event
   * @param {number} id
   */
  function onTileClick(event, id) {
    if (event.shiftKey && view.lastClicked !== null) {
      const ids = order();
      const [a, b] = [ids.indexOf(view.lastClicked), ids.indexOf(id)].sort((x, y) => x - y);
      for (const i of ids.slice(a, b + 1)) view.selected.add(i);
    } else if (event.ctrlKey || event.metaKey) {
      if (view.selected.has(id)) view.selected.delete(id); else view.selected.add(id);
    } else if (view.selected.size) {
      view.selected.clear();
    } else {
      openViewer(id, neighbour);
      return;
    }
    view.lastClicked = id;
    selectionChanged();
  }

  /** @param {ImageSummary} image */
  function tile(image) {
    const caption = image.prompt || image.original_name;
    const star = el('button', { type: 'button', className: 'tile-star', title: 'Favorite', ariaLabel: 'Favorite' });
    const node = el('figure', { className: 'tile', dataset: { imageId: String(image.id) }, tabIndex: 0, title: caption },
      el('img', { src: fileUrl(image.thumb), alt: caption, loading: 'lazy', decoding: 'async' }),
      star,
      el('figcaption', {}, caption));
    markFavorite(node, image.favorite);
    node.classList.toggle('selected', view.selected.has(image.id));
    star.addEventListener('click', async (e) => {
      e.stopPropagation();
      try {
        const now = await api.toggleFavorite(image.id);
        emit(APP_EVENTS.FAVORITE_CHANGED, { id: image.id, favorite: now });
      } catch (err) { toast(err, 'error'); }
    });
    node.addEventListener('click', (e) => onTileClick(e, image.id));
    node.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && e.target === node) openViewer(image.id, neighbour);
    });
    view.tiles.set(image.id, node);
    return node;
  }

  function sentinelNear() {
    return sentinel.getBoundingClientRect().top < window.innerHeight + 800;
  }

  async function loadMore() {
    const projectId = view.projectId;
    if (projectId === null || view.loading || view.exhausted) return;
    view.loading = true;
    const mine = view.generation;
    try {
      const page = await api.listImages(projectId, {
        search: view.query.search || null,
        favorites_only: view.query.favoritesOnly,
        cursor: view.cursor,
        limit: PAGE,
      });
      if (mine !== view.generation) return;
      view.cursor = page.next_cursor;
      view.exhausted = !page.next_cursor;
      grid.append(...page.images.filter((i) => !view.tiles.has(i.id)).map(tile));
      empty.hidden = view.tiles.size > 0;
      if (view.pendingReveal !== null && view.tiles.has(view.pendingReveal)) reveal(view.pendingReveal);
    } catch (e) {
      toast(e, 'error');
    } finally {
      if (mine === view.generation) view.loading = false;
    }
    if (mine === view.generation && !view.exhausted && !root.closest('[hidden]') && sentinelNear()) loadMore();
  }

  /** @param {number} id */
  function reveal(id) {
    const node = view.tiles.get(id);
    if (!node) { view.pendingReveal = id; return; }
    view.pendingReveal = null;
    node.scrollIntoView({ block: 'center' });
    node.focus({ preventScroll: true });
    node.classList.add('flash');
    setTimeout(() => node.classList.remove('flash'), 1600);
  }

  new IntersectionObserver((entries) => {
    if (entries.some((e) => e.isIntersecting)) loadMore();
  }, { rootMargin: '800px' }).observe(sentinel);

  on(APP_EVENTS.FAVORITE_CHANGED, ({ id, favorite }) => {
    const node = view.tiles.get(id);
    if (node) markFavorite(node, favorite);
  });

  return {
    load(projectId, query) {
      view.generation += 1;
      view.projectId = projectId;
      view.query = { ...query };
      view.cursor = null;
      view.exhausted = false;
      view.loading = false;
      view.lastClicked = null;
      view.tiles.clear();
      view.selected.clear();
      grid.replaceChildren();
      empty.hidden = true;
      selectionChanged();
      loadMore();
    },
    prepend(images) {
      const fresh = images.filter((i) => !view.tiles.has(i.id));
      for (const image of fresh) grid.prepend(tile(image));
      if (fresh.length) empty.hidden = true;
    },
    selection: () => [...view.selected],
    clearSelection() {
      view.selected.clear();
      selectionChanged();
    },
    reveal,
    count: () => view.tiles.size,
  };
}
