// @ts-check
// The generation parameters (size with aspect presets, or SDXL's trained sizes, steps, guidance,
// seed, count, scheduler, and SDXL's size conditioning), a component any screen can host. Every bound comes from the core's Limits: the selected
// model's, the engine's before one is picked, the cloud server's for cloud jobs.
import { el, scoped } from '../dom.js';

/** @typedef {import('../types.js').Limits} Limits */
/** @typedef {import('../types.js').ModelDefaults} ModelDefaults */
/** @typedef {import('../types.js').Recipe} Recipe */

/** Scheduler names the engine knows ('' = the model's own). */
const SCHEDULERS = [['', 'Model default'], ['ddim', 'DDIM'], ['euler', 'Euler'], ['euler_a', 'Euler ancestral'], ['dpmpp_2m_karras', 'DPM++ 2M Karras']];
/** Hires-fix factors ('' = off). */
const HIRES = [['', 'Off'], ['1.5', '×1.5'], ['2', '×2']];
/** Aspect presets: width and height ratios. */
const ASPECTS = /** @type {Record<string, [number, number]>} */ ({ '1:1': [1, 1], '3:2': [3, 2], '2:3': [2, 3], '16:9': [16, 9], '9:16': [9, 16] });
const ASPECT_LABELS = [['1:1', 'Square 1:1'], ['3:2', 'Landscape 3:2'], ['2:3', 'Portrait 2:3'], ['16:9', 'Wide 16:9'], ['9:16', 'Tall 9:16'], ['custom', 'Custom']];
/** SDXL's trained sizes (width × height), about a megapixel each. */
const XL_SIZES = [['1024x1024', 'Square'], ['1152x896', 'Landscape'], ['896x1152', 'Portrait'], ['1216x832', 'Landscape'],
  ['832x1216', 'Portrait'], ['1344x768', 'Wide'], ['768x1344', 'Tall'], ['1536x640', 'Panorama'], ['640x1536', 'Tall']];

/**
 * @typedef {object} ParamValues
 * @property {number} width
 * @property {number} height
 * @property {number} steps
 * @property {number} guidance
 * @property {number | null} seed null: a new random seed
 * @property {number} count
 * @property {string | null} scheduler null: the model's own
 * @property {SizeConditions} size_conditions SDXL's; empty for other models
 * @property {HiresFix | null} hires a second, larger pass
 */
/** @typedef {import('../types.js').HiresFix} HiresFix */
/** @typedef {import('../types.js').SizeConditions} SizeConditions */

/**
 * @typedef {object} ParamForm
 * @property {HTMLElement} root
 * @property {(limits: Limits | null) => void} setLimits
 * @property {(defaults: ModelDefaults) => void} setDefaults fills size, steps, guidance, scheduler
 * @property {(enabled: boolean) => void} setSchedulerEnabled
 * @property {(xl: boolean) => void} setXl SDXL's sizes and size conditioning, or the aspect presets
 * @property {() => ParamValues} values
 * @property {(recipe: Recipe) => void} fill from an image's recipe, seed included, count 1
 * @property {(width: number, height: number) => void} setSize the size of an image to start from
 * @property {(opts: { cloud: boolean }) => string[]} problems what is wrong, for the user
 * @property {(seed: number) => void} setLastSeed
 */

/**
 * A labelled number input.
 * @param {string} label
 * @param {string} name
 * @param {Record<string, unknown>} [props]
 */
function numberField(label, name, props = {}) {
  return el('label', {}, label, el('input', { type: 'number', name, inputMode: 'numeric', ...props }));
}

/**
 * Builds the form inside `host`; `onChange` runs after any edit.
 * @param {HTMLElement} host
 * @param {() => void} onChange
 * @returns {ParamForm}
 */
export function createParamForm(host, onChange) {
  const root = el('fieldset', { className: 'param-form' },
    el('legend', {}, 'Parameters'),
    el('label', {}, 'Size', el('select', { name: 'aspect' },
      ...ASPECT_LABELS.map(([value, text]) => el('option', { value }, text)))),
    el('div', { className: 'pair' }, numberField('Width', 'width'), numberField('Height', 'height')),
    el('div', { className: 'pair' }, numberField('Steps', 'steps', { min: 1 }), numberField('Guidance', 'guidance', { min: 0, step: 'any', inputMode: 'decimal' })),
    el('div', { className: 'pair' }, numberField('Seed', 'seed', { min: 0, placeholder: 'random' }), numberField('Count', 'count', { min: 1, value: '1' })),
    el('div', { className: 'pair' },
      el('button', { type: 'button', name: 'random-seed', title: 'Use a new random seed each time' }, 'Random seed'),
      el('button', { type: 'button', name: 'last-seed', title: 'Reuse the last seed', disabled: true }, 'Last seed')),
    el('label', {}, 'Scheduler', el('select', { name: 'scheduler' },
      ...SCHEDULERS.map(([value, text]) => el('option', { value }, text)))),
    el('div', { className: 'pair', title: 'Hires fix: a second pass at a larger size (Lanczos), redrawn at this strength' },
      el('label', {}, 'Hires fix', el('select', { name: 'hires' },
        ...HIRES.map(([value, text]) => el('option', { value }, text)))),
      numberField('Hires strength', 'hires-strength', { min: 0, max: 1, step: 0.05, value: '0.4', inputMode: 'decimal' })),
    el('details', { className: 'size-conditions', hidden: true },
      el('summary', {}, 'SDXL size conditioning'),
      el('p', { className: 'muted' }, 'What the model is told about the picture; empty fields use the image size and no crop.'),
      el('div', { className: 'pair' }, numberField('Original width', 'original-width', { min: 1, placeholder: 'image' }),
        numberField('Original height', 'original-height', { min: 1, placeholder: 'image' })),
      el('div', { className: 'pair' }, numberField('Crop left', 'crop-left', { min: 0, placeholder: '0' }),
        numberField('Crop top', 'crop-top', { min: 0, placeholder: '0' })),
      el('div', { className: 'pair' }, numberField('Target width', 'target-width', { min: 1, placeholder: 'image' }),
        numberField('Target height', 'target-height', { min: 1, placeholder: 'image' }))),
  );
  host.replaceChildren(root);
  const { q } = scoped(root);
  const input = (/** @type {string} */ name) => q(`input[name="${name}"]`, HTMLInputElement);
  const aspect = q('select[name="aspect"]', HTMLSelectElement);
  const scheduler = q('select[name="scheduler"]', HTMLSelectElement);
  const hires = q('select[name="hires"]', HTMLSelectElement);
  const hiresStrength = input('hires-strength');
  const lastSeedButton = q('button[name="last-seed"]', HTMLButtonElement);
  const [width, height, steps, guidance, seed, count] = ['width', 'height', 'steps', 'guidance', 'seed', 'count'].map(input);
  const conditions = q('details.size-conditions', HTMLDetailsElement);
  /** SDXL's size-conditioning inputs, as [height or top, width or left] pairs. */
  const pairs = /** @type {Record<keyof SizeConditions, [HTMLInputElement, HTMLInputElement]>} */ ({
    original_size: [input('original-height'), input('original-width')],
    crop_top_left: [input('crop-top'), input('crop-left')],
    target_size: [input('target-height'), input('target-width')],
  });
  const conditionInputs = Object.values(pairs).flat();
  /** Whether the model is SDXL: its trained sizes replace the aspect presets. */
  let xl = false;

  /** @type {Limits | null} */
  let limits = null;
  /** The model's native side, around which aspect presets are sized. */
  let nativeSide = 0;
  /** @type {number | null} */
  let lastSeed = null;

  /** Rounds a side to the limits' step, within their bounds. */
  function fit(/** @type {number} */ v) {
    if (!limits) return Math.round(v);
    const step = limits.side_step;
    const lo = Math.ceil(limits.min_side / step) * step;
    const hi = Math.floor(limits.max_side / step) * step;
    return Math.min(hi, Math.max(lo, Math.round(v / step) * step));
  }

  /** The size options for the model: SDXL's trained sizes, or aspects around its native side. */
  function sizeOptions() {
    const options = xl
      ? [...XL_SIZES.map(([value, label]) => [value, `${label} ${value.replace('x', '×')}`]), ['custom', 'Custom']]
      : ASPECT_LABELS;
    aspect.replaceChildren(...options.map(([value, text]) => el('option', { value }, text)));
  }

  function applyAspect() {
    const exact = /^(\d+)x(\d+)$/.exec(aspect.value);
    if (exact) {
      width.value = exact[1];
      height.value = exact[2];
      return;
    }
    const ratio = ASPECTS[aspect.value];
    if (!ratio || !nativeSide) return;
    const [w, h] = ratio;
    const scale = Math.sqrt((nativeSide * nativeSide) / (w * h));
    width.value = String(fit(w * scale));
    height.value = String(fit(h * scale));
  }

  /** The preset matching the current size, else custom. */
  function matchAspect() {
    const w = Number(width.value);
    const h = Number(height.value);
    if (xl) {
      aspect.value = XL_SIZES.some(([v]) => v === `${w}x${h}`) ? `${w}x${h}` : 'custom';
      return;
    }
    const found = Object.entries(ASPECTS).find(([, [a, b]]) => {
      const scale = Math.sqrt((nativeSide * nativeSide) / (a * b));
      return fit(a * scale) === w && fit(b * scale) === h;
    });
    aspect.value = found ? found[0] : 'custom';
  }

  /** The size conditions the user set: pairs with both numbers given. */
  function sizeConditions() {
    /** @type {SizeConditions} */
    const out = {};
    for (const [key, [a, b]] of Object.entries(pairs)) {
      if (a.value !== '' && b.value !== '') out[/** @type {keyof SizeConditions} */ (key)] = [Number(a.value), Number(b.value)];
    }
    return out;
  }

  aspect.addEventListener('change', () => { applyAspect(); onChange(); });
  for (const node of [width, height]) node.addEventListener('input', () => { matchAspect(); onChange(); });
  for (const node of [steps, guidance, seed, count, ...conditionInputs]) node.addEventListener('input', onChange);
  scheduler.addEventListener('change', onChange);
  hires.addEventListener('change', () => { hiresStrength.disabled = !hires.value; onChange(); });
  hiresStrength.addEventListener('input', onChange);
  hiresStrength.disabled = true;
  q('button[name="random-seed"]').addEventListener('click', () => { seed.value = ''; onChange(); });
  lastSeedButton.addEventListener('click', () => {
    if (lastSeed !== null) seed.value = String(lastSeed);
    onChange();
  });

  return {
    root,
    setLimits(next) {
      limits = next;
      for (const node of [width, height]) {
        node.min = next ? String(next.min_side) : '';
        node.max = next ? String(next.max_side) : '';
        node.step = next ? String(next.side_step) : 'any';
      }
      steps.max = next ? String(next.max_steps) : '';
      guidance.max = next ? String(next.max_guidance) : '';
      count.max = next ? String(next.max_count) : '';
    },
    setDefaults(d) {
      nativeSide = d.width === d.height ? d.width : Math.round(Math.sqrt(d.width * d.height));
      width.value = String(d.width);
      height.value = String(d.height);
      matchAspect();
      steps.value = String(d.steps);
      guidance.value = String(d.guidance);
      scheduler.value = SCHEDULERS.some(([v]) => v === d.scheduler) ? d.scheduler : '';
    },
    setXl(next) {
      if (next === xl) return;
      xl = next;
      conditions.hidden = !xl;
      sizeOptions();
      matchAspect();
    },
    setSchedulerEnabled(enabled) {
      scheduler.disabled = !enabled;
      scheduler.title = enabled ? '' : 'The cloud server uses its own scheduler';
    },
    values() {
      return {
        width: Number(width.value),
        height: Number(height.value),
        steps: Number(steps.value),
        guidance: Number(guidance.value),
        seed: seed.value === '' ? null : Number(seed.value),
        count: Number(count.value),
        scheduler: scheduler.value || null,
        size_conditions: xl ? sizeConditions() : {},
        hires: hires.value ? { factor: Number(hires.value), strength: Number(hiresStrength.value) } : null,
      };
    },
    fill(r) {
      if (r.width) width.value = String(r.width);
      if (r.height) height.value = String(r.height);
      matchAspect();
      if (r.steps) steps.value = String(r.steps);
      if (r.guidance !== undefined && r.guidance !== null) guidance.value = String(r.guidance);
      seed.value = r.seed === undefined || r.seed === null ? '' : String(r.seed);
      count.value = '1';
      if (r.scheduler && SCHEDULERS.some(([v]) => v === r.scheduler)) scheduler.value = r.scheduler;
      for (const [key, [a, b]] of Object.entries(pairs)) {
        const pair = r.size_conditions?.[/** @type {keyof SizeConditions} */ (key)];
        a.value = pair ? String(pair[0]) : '';
        b.value = pair ? String(pair[1]) : '';
      }
      if (r.size_conditions && Object.keys(r.size_conditions).length) conditions.open = true;
      if (r.hires && !HIRES.some(([v]) => v === String(r.hires?.factor))) {
        hires.append(el('option', { value: String(r.hires.factor) }, `×${r.hires.factor}`));
      }
      hires.value = r.hires ? String(r.hires.factor) : '';
      if (r.hires) hiresStrength.value = String(r.hires.strength);
      hiresStrength.disabled = !hires.value;
    },
    setSize(w, h) {
      width.value = String(w);
      height.value = String(h);
      matchAspect();
      onChange();
    },
    problems({ cloud }) {
      if (!limits) return ['The generation limits are not known yet.'];
      const l = limits;
      const v = this.values();
      /** @type {[HTMLInputElement, string][]} */
      const bad = [];
      for (const [node, label, side] of /** @type {[HTMLInputElement, string, number][]} */ ([[width, 'Width', v.width], [height, 'Height', v.height]])) {
        if (!Number.isInteger(side) || side % l.side_step || side < l.min_side || side > l.max_side) {
          bad.push([node, `${label} must be a multiple of ${l.side_step} between ${l.min_side} and ${l.max_side}.`]);
        }
      }
      if (!Number.isInteger(v.steps) || v.steps < 1 || v.steps > l.max_steps) bad.push([steps, `Steps must be between 1 and ${l.max_steps}.`]);
      if (guidance.value === '' || !(v.guidance >= 0 && v.guidance <= l.max_guidance)) {
        bad.push([guidance, `Guidance must be between 0 and ${l.max_guidance}.`]);
      }
      if (!Number.isInteger(v.count) || v.count < 1 || v.count > l.max_count) {
        bad.push([count, `Count must be between 1 and ${l.max_count}${cloud ? ' in the cloud' : ''}.`]);
      }
      if (v.seed !== null && (!Number.isSafeInteger(v.seed) || v.seed < 0)) bad.push([seed, 'The seed must be a whole number, 0 or more.']);
      if (v.hires) {
        if (hiresStrength.value === '' || !(v.hires.strength >= 0 && v.hires.strength <= 1)) bad.push([hiresStrength, 'The hires strength must be between 0 and 1.']);
        const [w2, h2] = [v.width, v.height].map((side) => Math.floor((side * (v.hires?.factor ?? 1)) / l.side_step) * l.side_step);
        if (w2 > l.max_side || h2 > l.max_side) bad.push([width, `With the hires fix the image would be ${w2}×${h2}; at most ${l.max_side} a side.`]);
      }
      if (xl) {
        for (const node of conditionInputs) {
          const n = Number(node.value);
          const least = Number(node.min);
          if (node.value !== '' && (!Number.isSafeInteger(n) || n < least)) {
            bad.push([node, `SDXL size conditions are whole numbers of ${least} or more; leave a field empty for the default.`]);
          }
        }
        for (const [a, b] of Object.values(pairs)) {
          if ((a.value === '') !== (b.value === '')) bad.push([a.value === '' ? a : b, 'Give both numbers of a size condition, or neither.']);
        }
      }
      for (const node of [width, height, steps, guidance, seed, count, hiresStrength, ...conditionInputs]) {
        if (bad.some(([b]) => b === node)) node.setAttribute('aria-invalid', 'true');
        else node.removeAttribute('aria-invalid');
      }
      return bad.map(([, message]) => message);
    },
    setLastSeed(s) {
      lastSeed = s;
      lastSeedButton.disabled = false;
    },
  };
}
