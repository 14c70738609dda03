// @ts-check
// "Start from an image" on the Create screen: the image a job starts from (a library image's
// "Use as input", or a file dropped on the screen), its strength, the mask painted over it
// (inpainting) or the margins it is extended by (outpainting). Inputs are kept in the library
// by content, so a recipe that names them can be made again.
import { api, convertFile } from '../api.js';
import { scoped, toast } from '../dom.js';
import { paintMask } from './mask-painter.js';

/** @typedef {import('../types.js').InputInfo} InputInfo */
/** @typedef {import('../types.js').InputParams} InputParams */
/** @typedef {import('../types.js').SourceImage} SourceImage */

/** Strength when an image is picked: A1111's default for img2img; 1 repaints a mask fully. */
const DEFAULT_STRENGTH = 0.75;
/** The edge, in pixels, over which pasted-back pixels blend into the result (A1111's mask blur). */
const MASK_BLUR = 4;

/**
 * @typedef {object} ImageInputPanel
 * @property {(source: { imageId?: number, path?: string }) => Promise<boolean>} choose keeps and shows an image
 * @property {(source: SourceImage | null) => Promise<void>} restore from a recipe (null clears)
 * @property {() => InputParams | null} params what the job sends
 * @property {() => [number, number] | null} size the canvas size: the image's, with the outpaint margins
 * @property {() => string | null} problem what stops a job, if anything
 */

/**
 * Builds the panel inside `root`; `onChange` runs when anything changes, told whether the
 * canvas size did (a new image, other outpaint margins).
 * @param {HTMLElement} root
 * @param {(sizeChanged: boolean) => void} onChange
 * @returns {ImageInputPanel}
 */
export function createImageInput(root, onChange) {
  const { q } = scoped(root);
  const strength = q('#create-strength', HTMLInputElement);
  const pasteBack = q('#create-paste-back', HTMLInputElement);
  const margins = ['left', 'right', 'top', 'bottom'].map((side) => q(`#create-outpaint-${side}`, HTMLInputElement));
  /** @type {{ image: InputInfo | null, mask: InputInfo | null }} */
  const input = { image: null, mask: null };

  /** @returns {[number, number, number, number] | null} */
  function outpaint() {
    const m = /** @type {[number, number, number, number]} */ (margins.map((n) => Number(n.value) || 0));
    return m.some((v) => v > 0) ? m : null;
  }

  function render() {
    const chosen = input.image;
    q('#create-input-empty').hidden = Boolean(chosen);
    q('#create-input-chosen').hidden = !chosen;
    for (const id of ['#create-input-mask', '#create-input-clear']) q(id, HTMLButtonElement).disabled = !chosen;
    q('#create-input-clear-mask', HTMLButtonElement).disabled = !input.mask;
    strength.disabled = !chosen;
    pasteBack.disabled = !input.mask && !outpaint();
    for (const m of margins) m.disabled = !chosen;
    q('#create-strength-value').textContent = Number(strength.value).toFixed(2);
    if (chosen) {
      q('#create-input-thumb', HTMLImageElement).src = convertFile(chosen.path);
      q('#create-input-size').textContent = `${chosen.width}×${chosen.height}`;
      q('#create-input-mask-state').textContent = input.mask ? '· masked (inpaint)' : outpaint() ? '· outpaint' : '· img2img';
    }
    root.dataset.mode = !chosen ? 'none' : input.mask ? 'inpaint' : outpaint() ? 'outpaint' : 'img2img';
    q('#create-input-state').textContent = chosen ? `(${root.dataset.mode})` : '';
  }

  /** @param {boolean} [sizeChanged] */
  function changed(sizeChanged = false) {
    render();
    onChange(sizeChanged);
  }

  /** @param {InputInfo} image */
  function use(image) {
    input.image = image;
    input.mask = null;
    for (const m of margins) m.value = '0';
    strength.value = String(DEFAULT_STRENGTH);
    /** @type {HTMLDetailsElement} */ (root).open = true;
    changed(true);
  }

  q('#create-input-mask').addEventListener('click', async () => {
    if (!input.image) return;
    const mask = await paintMask(input.image, input.mask);
    if (!mask) return;
    input.mask = mask;
    for (const m of margins) m.value = '0';
    // A painted area is usually redrawn whole; the slider can lower it.
    strength.value = '1';
    changed();
  });
  q('#create-input-clear-mask').addEventListener('click', () => { input.mask = null; changed(); });
  q('#create-input-clear').addEventListener('click', () => { input.image = null; input.mask = null; changed(true); });
  strength.addEventListener('input', () => changed());
  pasteBack.addEventListener('change', () => changed());
  for (const m of margins) {
    /** @type {boolean} */
    let wasOutpaint = false;
    m.addEventListener('focus', () => { wasOutpaint = Boolean(outpaint()); });
    m.addEventListener('input', () => {
      if (outpaint()) {
        input.mask = null;
        // New canvas is painted from nothing, as with a painted mask; the slider can lower it.
        if (!wasOutpaint) strength.value = '1';
        wasOutpaint = true;
      }
      changed(true);
    });
  }
  render();

  return {
    async choose(source) {
      try {
        use(await api.keepInput(source));
        return true;
      } catch (e) {
        toast(e, 'error');
        return false;
      }
    },
    async restore(source) {
      if (!source) {
        input.image = null;
        input.mask = null;
        changed(true);
        return;
      }
      try {
        const image = await api.inputInfo(source.image_sha256);
        const mask = source.mask_sha256 ? await api.inputInfo(source.mask_sha256) : null;
        input.image = image;
        input.mask = mask;
        strength.value = String(source.strength);
        pasteBack.checked = source.paste_back !== undefined && source.paste_back !== null;
        const m = source.outpaint || [0, 0, 0, 0];
        margins.forEach((node, i) => { node.value = String(m[i]); });
        /** @type {HTMLDetailsElement} */ (root).open = true;
        changed(true);
      } catch (e) {
        input.image = null;
        input.mask = null;
        changed(true);
        toast(e, 'error');
      }
    },
    params() {
      if (!input.image) return null;
      return {
        image_sha256: input.image.sha256,
        strength: Number(strength.value),
        mask_sha256: input.mask?.sha256 ?? null,
        outpaint: outpaint(),
        paste_back: (input.mask || outpaint()) && pasteBack.checked ? MASK_BLUR : null,
      };
    },
    size() {
      if (!input.image) return null;
      const [l, r, t, b] = outpaint() || [0, 0, 0, 0];
      return [input.image.width + l + r, input.image.height + t + b];
    },
    problem() {
      if (!input.image) return null;
      const s = Number(strength.value);
      if (!(s >= 0 && s <= 1)) return 'The strength must be between 0 and 1.';
      if (margins.some((m) => !(Number(m.value) >= 0) || !Number.isInteger(Number(m.value)))) {
        return 'Outpaint margins are whole numbers of pixels, 0 or more.';
      }
      return null;
    },
  };
}
