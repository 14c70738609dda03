// End-to-end test through the real WebView: tauri-driver + WebKitWebDriver drive the built app
// on a temp library. Usage: node e2e/app.e2e.mjs <path to the app binary> [screenshot dir]
import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, writeFileSync, existsSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, delimiter, resolve } from 'node:path';
import assert from 'node:assert/strict';
import { WebDriver, Keys } from './webdriver.mjs';
import { makePng } from './png.mjs';
import { startHub } from './hub.mjs';
import { startCloud, motoBinary, freePort } from './cloud.mjs';

const app = resolve(process.argv[2] || '');
const shots = resolve(process.argv[3] || 'target/e2e');
assert.ok(existsSync(app), `app binary not found: ${app} (build it first)`);
mkdirSync(shots, { recursive: true });

const work = mkdtempSync(join(tmpdir(), 'selfdiffusion-e2e-'));
const library = join(work, 'library');
const inbox = join(work, 'inbox');
const exportPath = join(work, 'out', 'export.zip');
mkdirSync(inbox);
mkdirSync(join(work, 'out'));
// The tiny diffusers model of ../shared/fixtures, served as the catalog's sd-1.5 by a local hub.
const fixtures = process.env.SELFDIFFUSION_FIXTURES || resolve('..', 'shared', 'fixtures');
const tinyModel = join(fixtures, 'tiny-sd15', 'model');
const haveModel = existsSync(join(tinyModel, 'model_index.json'));
if (!haveModel && process.env.CI === 'true') {
  console.error(`e2e: the tiny model is missing at ${tinyModel}; under CI=true generation must be tested`);
  process.exit(1);
}
// A single-file checkpoint of the same tiny model and a kohya LoRA for it, the native pickers'
// answers when the Models screen imports them (used with the downloaded sd-1.5's configs).
const checkpointFile = join(fixtures, 'tiny-sd15-single-file', 'tiny-sd15.safetensors');
const loraFile = join(fixtures, 'tiny-sd15-lora', 'lora', 'kohya_style.safetensors');
const haveImports = existsSync(checkpointFile) && existsSync(loraFile);
if (haveModel && !haveImports && process.env.CI === 'true') {
  console.error(`e2e: the single-file and LoRA fixtures are missing (${checkpointFile}, ${loraFile}); under CI=true they must be tested`);
  process.exit(1);
}
// The tiny SDXL model, served as the catalog's SDXL-Turbo.
const tinyXl = join(fixtures, 'tiny-sdxl', 'model');
const haveXl = existsSync(join(tinyXl, 'model_index.json'));
if (haveModel && !haveXl && process.env.CI === 'true') {
  console.error(`e2e: the tiny SDXL model is missing at ${tinyXl}; under CI=true SDXL must be tested`);
  process.exit(1);
}
const hub = haveModel
  ? await startHub({ sd15: tinyModel, sdxl: haveXl ? tinyXl : null }, 'unet/diffusion_pytorch_model.fp16.safetensors')
  : null;
const moto = motoBinary();
if (haveModel && !moto && process.env.CI === 'true') {
  console.error('e2e: moto_server not found (scripts/test.sh installs it; or set MOTO_SERVER)');
  process.exit(1);
}
const cloud = haveModel && moto ? await startCloud({ moto, appBinary: app, model: tinyModel, work }) : null;
const prompts = ['a lighthouse on a cliff at dawn', 'a red fox in fresh snow', 'a bowl of ramen, studio light'];
const inputs = prompts.map((prompt, i) => {
  const file = join(inbox, `input-${i}.png`);
  writeFileSync(file, makePng(96, 64, i + 1, `${prompt}\nNegative prompt: blurry\nSteps: ${20 + i}, Sampler: Euler a, CFG scale: 7, Seed: ${1000 + i}, Size: 96x64`));
  return file;
});

const port = await freePort();
const env = {
  ...process.env,
  SELFDIFFUSION_LIBRARY: library,
  SELFDIFFUSION_E2E_OPEN_PATHS: inputs.join(delimiter),
  SELFDIFFUSION_E2E_SAVE_PATH: exportPath,
  SELFDIFFUSION_E2E_CHECKPOINT_PATH: checkpointFile,
  SELFDIFFUSION_E2E_LORA_PATH: loraFile,
  // A tiny random Real-ESRGAN ×4 net the engine's tests compare with PyTorch.
  SELFDIFFUSION_E2E_UPSCALER_PATH: resolve('crates/engine/tests/data/tiny-esrgan/x4.safetensors'),
  XDG_CONFIG_HOME: join(work, 'config'),
  XDG_DATA_HOME: join(work, 'data'),
  XDG_CACHE_HOME: join(work, 'cache'),
  HF_HOME: join(work, 'hf'),
  HF_ENDPOINT: hub ? hub.url : 'http://127.0.0.1:9',
  GSETTINGS_BACKEND: 'memory',
  RUST_LOG: 'warn',
  ...(cloud ? cloud.env : {}),
};
const driverBin = process.env.TAURI_DRIVER || 'tauri-driver';
const driver = spawn(driverBin, ['--port', String(port)], { env, stdio: ['ignore', 'inherit', 'inherit'] });
const wd = new WebDriver(`http://127.0.0.1:${port}`);

/** Lets the WebView paint what it has loaded before a screenshot. */
function settle() {
  return wd.call('POST', wd.s('/execute/async'), {
    script: 'const done = arguments[0]; requestAnimationFrame(() => requestAnimationFrame(() => setTimeout(done, 300)));',
    args: [],
  });
}

async function step(name, fn) {
  process.stdout.write(`e2e: ${name} … `);
  await fn();
  process.stdout.write('ok\n');
}

/** Sets a field's value as typing would, by CSS selector (input and change events). */
const setValue = (css, value) => wd.exec(
  'const e = document.querySelector(arguments[0]); e.value = arguments[1]; e.dispatchEvent(new Event("input", { bubbles: true })); e.dispatchEvent(new Event("change", { bubbles: true }))',
  css, String(value),
);
const count = (css) => wd.exec('return document.querySelectorAll(arguments[0]).length', css);
const visible = (css) => wd.exec('const e = document.querySelector(arguments[0]); return !!e && !e.closest("[hidden]")', css);
const projectNames = () => wd.exec('return [...document.querySelectorAll("#project-list .project-item-name")].map(e => e.textContent)');
/** Shows a screen through the navigation rail. */
async function go(screen) {
  await wd.click(screen === 'account' ? '#open-account' : `#nav-${screen}`);
  await wd.waitFor(`#screen-${screen}`);
}
const param = (name) => `#create-params [name="${name}"]`;
const tiles = () => count('#gallery .tile');
const strip = () => count('#create-strip .thumb');
const jobStates = () => wd.exec('return [...document.querySelectorAll("#create-jobs li")].map(li => li.dataset.state)');
const generateEnabled = () => wd.until(() => wd.exec('return !document.getElementById("create-submit").disabled'), 'Generate enabled');
async function shot(name) {
  await settle();
  writeFileSync(join(shots, name), await wd.screenshot());
}
const ETA = /^(about \d+ s|\d+:\d{2}(:\d{2})?) left$/;

let failed = false;
try {
  await wd.until(async () => (await fetch(`http://127.0.0.1:${port}/status`)).ok, 'tauri-driver', 30000);
  await wd.start({ browserName: 'wry', 'tauri:options': { application: app } });

  await step('first run opens Create on the default project, ready for a prompt', async () => {
    await wd.until(() => wd.exec('return document.body.dataset.ready === "true"'), 'app ready', 60000);
    await wd.waitFor('#screen-create');
    assert.equal(await visible('#screen-library'), false, 'only Create is shown');
    assert.equal(await wd.exec('return document.querySelector("#create-project").selectedOptions[0].textContent'), 'My images');
    assert.equal(await wd.exec('return document.activeElement && document.activeElement.id'), 'create-prompt', 'the prompt has the focus');
    assert.equal(await wd.exec('return document.querySelector("#nav-create").getAttribute("aria-current")'), 'page');
    assert.deepEqual(await projectNames(), ['My images']);
  });

  await step('create a project in the library', async () => {
    await go('library');
    await wd.click('#library-new-project');
    await wd.type('#project-name-input', 'E2E Landscapes');
    await wd.type('#project-description-input', 'made by the end-to-end test');
    await wd.click('#project-save');
    await wd.until(async () => (await wd.text('#project-name')) === 'E2E Landscapes', 'project header');
    assert.deepEqual(await projectNames(), ['E2E Landscapes', 'My images']);
  });

  await step('a duplicate name is refused with a clear message', async () => {
    await wd.click('#library-new-project');
    await wd.type('#project-name-input', 'e2e landscapes');
    await wd.click('#project-save');
    const msg = await wd.until(async () => wd.text('#project-form-error'), 'form error');
    assert.match(msg, /already exists/);
    await wd.keys(Keys.ESCAPE);
    await wd.until(() => wd.exec('return !document.getElementById("project-dialog").open'), 'Esc closes the dialog');
  });

  await step('import images and see them in the gallery', async () => {
    await wd.click('#import-files');
    await wd.until(async () => (await tiles()) === 3, '3 tiles');
    const loaded = await wd.until(() => wd.exec(
      'const imgs = [...document.querySelectorAll("#gallery .tile img")]; return imgs.every(i => i.complete && i.naturalWidth > 0) && imgs.length',
    ), 'thumbnails to load through the asset protocol');
    assert.equal(loaded, 3);
    assert.match(await wd.text('#project-stats'), /^3 images/);
    await shot('library.png');
  });

  await step('open an image, read its parameters, move with the arrows, close with Esc', async () => {
    await wd.click('#gallery .tile:last-child');
    await wd.waitFor('#viewer[open] #viewer-recipe');
    assert.equal(await wd.text('#viewer-recipe dd[data-field="prompt"]'), prompts[0]);
    assert.equal(await wd.text('#viewer-recipe dd[data-field="negative-prompt"]'), 'blurry');
    assert.equal(await wd.text('#viewer-recipe dd[data-field="seed"]'), '1000');
    assert.equal(await wd.text('#viewer-recipe dd[data-field="steps"]'), '20');
    const full = await wd.until(() => wd.exec('const i = document.getElementById("viewer-img"); return i.complete && i.naturalWidth'), 'full image');
    assert.equal(full, 96);
    const fits = await wd.exec(
      'const i = document.getElementById("viewer-img").getBoundingClientRect(), b = document.querySelector(".viewer-image").getBoundingClientRect();'
      + ' return i.width <= b.width + 1 && i.height <= b.height + 1',
    );
    assert.ok(fits, 'the image is scaled to fit the viewer');
    await shot('viewer.png');
    await wd.keys(Keys.ARROW_LEFT);
    await wd.until(async () => (await wd.text('#viewer-recipe dd[data-field="prompt"]')) === prompts[1], 'ArrowLeft shows the newer neighbour');
    await wd.keys(Keys.ARROW_RIGHT);
    await wd.until(async () => (await wd.text('#viewer-recipe dd[data-field="prompt"]')) === prompts[0], 'ArrowRight comes back');
    await wd.keys(Keys.ESCAPE);
    await wd.until(() => wd.exec('return !document.getElementById("viewer").open'), 'Esc closes the viewer');
  });

  await step('search filters by prompt', async () => {
    await wd.type('#search', 'fox');
    await wd.until(async () => (await tiles()) === 1, '1 tile after search');
    await wd.type('#search', '');
    await wd.exec('document.getElementById("search").dispatchEvent(new Event("input"))');
    await wd.until(async () => (await tiles()) === 3, '3 tiles again');
  });

  await step('rename the project', async () => {
    await wd.click('#edit-project');
    await wd.type('#project-name-input', 'E2E Renamed');
    await wd.click('#project-save');
    await wd.until(async () => (await wd.text('#project-name')) === 'E2E Renamed', 'renamed header');
    assert.equal(await wd.text('#project-description'), 'made by the end-to-end test');
  });

  await step('export a zip', async () => {
    await wd.click('#export-project');
    await wd.until(() => existsSync(exportPath), 'export file', 30000);
    await wd.until(() => wd.exec('return !document.getElementById("progress-dialog").open'), 'progress closed');
    const zip = readFileSync(exportPath);
    assert.equal(zip.subarray(0, 2).toString('latin1'), 'PK');
    assert.ok(zip.includes('manifest.json'), 'manifest in zip');
    for (const i of [0, 1, 2]) assert.ok(zip.includes(`images/input-${i}.png`), `input-${i} in zip`);
    assert.deepEqual(readdirSync(join(work, 'out')), ['export.zip'], 'no temp file left');
  });

  await step('move a selected image to another project', async () => {
    await wd.click('#library-new-project');
    await wd.type('#project-name-input', 'E2E Archive');
    await wd.click('#project-save');
    await wd.until(async () => (await wd.text('#project-name')) === 'E2E Archive', 'archive selected');
    const archiveId = await wd.exec('return Number(document.querySelector("#project-list .project.active").dataset.projectId)');
    await wd.exec('[...document.querySelectorAll("#project-list .project")].find(e => e.textContent.includes("E2E Renamed")).click()');
    await wd.until(async () => (await tiles()) === 3, '3 tiles in the first project');
    await wd.exec('document.querySelector("#gallery .tile").dispatchEvent(new MouseEvent("click", { bubbles: true, ctrlKey: true }))');
    assert.equal(await wd.text('#selection-count'), '1 selected');
    await setValue('#selection-move', archiveId);
    await wd.until(async () => (await tiles()) === 2, '2 tiles left');
    await wd.until(() => wd.exec(
      'return [...document.querySelectorAll("#project-list .project")].find(e => e.textContent.includes("E2E Archive")).textContent.includes("1 image")',
    ), 'archive shows 1 image');
  });

  if (haveModel) {
    await step('download the default model on the Models screen: cut midway, then resumed', async () => {
      await go('models');
      const row = '#model-list li[data-model-id="sd-1.5"]';
      const button = `${row} button[data-action="download"]`;
      assert.match(await wd.text(button), /^Download Stable Diffusion 1\.5 \(about 2\.1 GB\)$/);
      await wd.click(button);
      await wd.until(async () => (await wd.text(`${row} .error`)).includes('transfer failed'), 'the cut download reported', 60000);
      await wd.until(() => wd.exec('const b = document.querySelector(arguments[0]); return b && !b.disabled', button), 'download offered again');
      await wd.click(button);
      await wd.waitFor(`${row}[data-installed="true"]`, 60000);
      assert.equal(await wd.exec('return document.querySelector(arguments[0]).dataset.source', row), 'catalog');
      const resumed = hub.requests.filter((r) => r.range && r.url.startsWith('/blobs/'));
      assert.equal(resumed.length, 1, `one ranged request resumes the cut file: ${JSON.stringify(hub.requests)}`);
      assert.ok(Number(/bytes=(\d+)-/.exec(resumed[0].range)[1]) > 0, 'it resumes past the bytes already fetched');
      const configs = hub.requests.filter((r) => r.method === 'GET' && r.url.endsWith('model_index.json'));
      assert.equal(configs.length, 1, 'files already complete are not fetched again');
      await go('create');
      await wd.until(() => wd.exec('return document.getElementById("create-model").value === "sd-1.5"'), 'the model picked on Create');
      assert.equal(await visible('#create-model-hint'), false, 'no download hint once installed');
    });

    if (haveImports) {
      await step('import a single-file checkpoint and a LoRA on the Models screen, then generate with both', async () => {
        await go('models');
        assert.equal(await wd.exec('return document.getElementById("checkpoint-config").value'), 'builtin', 'built-in configs by default');
        // The tiny file has the tiny model's shapes: its configs come from the downloaded one.
        await setValue('#checkpoint-config', 'sd-1.5');
        await wd.click('#import-checkpoint');
        const row = '#model-list li[data-model-id="local:tiny-sd15"]';
        await wd.waitFor(`${row}[data-installed="true"]`, 30000);
        assert.equal(await wd.exec('return document.getElementById("checkpoint-error").textContent'), '', 'no import error');
        assert.equal(await wd.exec('return document.querySelector(arguments[0]).dataset.source', row), 'checkpoint');
        assert.match(await wd.text(`${row} [data-field="location"]`), /tiny-sd15\.safetensors$/, 'used where it is');
        await wd.click('#import-lora');
        const lora = '#lora-list li[data-lora-name="kohya_style"]';
        await wd.waitFor(lora, 30000);
        assert.equal(await wd.exec('return document.getElementById("lora-error").textContent'), '', 'no LoRA import error');
        assert.match(await wd.text(`${lora} .lora-size`), /\d/, 'its size');
        await shot('models.png');

        await go('create');
        const before = await strip();
        await wd.until(() => wd.exec('return [...document.getElementById("create-model").options].some(o => o.value === "local:tiny-sd15" && !o.disabled)'), 'the checkpoint in the model picker');
        await setValue('#create-model', 'local:tiny-sd15');
        await wd.until(() => wd.exec('return [...document.getElementById("create-lora").options].some(o => o.value === "kohya_style")'), 'the LoRA in the picker');
        await setValue('#create-prompt', 'a brass robot tending a garden');
        await setValue('#create-lora', 'kohya_style');
        await setValue('#create-lora-weight', '0.7');
        await wd.click('#create-lora-add');
        const promptText = await wd.exec('return document.getElementById("create-prompt").value');
        assert.ok(promptText.endsWith('<lora:kohya_style:0.7>'), `the tag added to the prompt: ${promptText}`);
        await setValue(param('width'), 64);
        await setValue(param('height'), 64);
        await setValue(param('steps'), 4);
        await setValue(param('count'), 1);
        await setValue(param('seed'), 3);
        await generateEnabled();
        await wd.click('#create-submit');
        await wd.waitFor('#create-jobs li');
        const final = await wd.until(async () => {
          const [newest] = await jobStates();
          return newest === 'done' || newest === 'failed' ? newest : null;
        }, 'the LoRA job finished', 120000);
        assert.equal(final, 'done', `the job with the checkpoint and the LoRA: ${await wd.exec('return document.querySelector("#create-jobs li")?.textContent')}`);
        await wd.until(async () => (await strip()) === before + 1, 'its image in the strip', 30000);
        await wd.until(() => wd.exec(
          'const s = document.querySelector("#create-stage"), first = document.querySelector("#create-strip .thumb"); return s.dataset.mode === "image" && first.classList.contains("current")',
        ), 'the new image on the stage');
        await wd.click('#create-image');
        await wd.waitFor('#viewer[open] #viewer-recipe dd[data-field="loras"]');
        assert.equal(await wd.text('#viewer-recipe dd[data-field="loras"]'), 'kohya_style 0.7');
        assert.equal(await wd.text('#viewer-recipe dd[data-field="model"]'), 'local:tiny-sd15');
        await wd.keys(Keys.ESCAPE);
        await wd.until(() => wd.exec('return !document.getElementById("viewer").open'), 'viewer closed');
        // Back as the steps that follow expect it: the downloaded model, no prompt.
        await setValue('#create-model', 'sd-1.5');
        await setValue('#create-prompt', '');
        await wd.until(async () => (await wd.text('#create-final')) === '(empty)', 'the prompt cleared');
      });

      await step('verify a downloaded model, and remove an imported checkpoint from the list', async () => {
        await go('models');
        const catalog = '#model-list li[data-model-id="sd-1.5"]';
        await wd.click(`${catalog} button[data-action="verify"]`);
        await wd.until(async () => /^All \d+ files are intact$/.test(await wd.text(`${catalog} [data-field="verify"]`)), 'the files checked');
        const imported = '#model-list li[data-model-id="local:tiny-sd15"]';
        assert.equal(await wd.text(`${catalog} button[data-action="forget"]`), 'Delete the downloaded files', 'a download is deleted, not forgotten');
        await wd.click(`${imported} button[data-action="forget"]`);
        await wd.click('#confirm-ok');
        await wd.until(() => wd.exec('return document.querySelector(arguments[0]) === null', imported), 'the checkpoint gone from the list');
        assert.ok(existsSync(checkpointFile), 'its file stays where it was');
        await go('create');
      });
    } else {
      console.log(`e2e: checkpoint and LoRA import skipped: no fixtures at ${checkpointFile} / ${loraFile}`);
    }

    if (haveXl) {
      await step('download SDXL-Turbo, see its family and trained sizes, generate with size conditioning', async () => {
        await go('models');
        const row = '#model-list li[data-model-id="sdxl-turbo"]';
        await wd.click(`${row} button[data-action="download"]`);
        await wd.waitFor(`${row}[data-installed="true"]`, 60000);
        assert.match(await wd.text(`${row} [data-field="facts"]`), /^Stable Diffusion XL · fp32 · [\d.]+ MB on disk$/);
        await go('create');
        await setValue('#create-model', 'sdxl-turbo');
        const options = () => wd.exec('return [...document.querySelector(arguments[0]).options].map(o => o.value)', param('aspect'));
        await wd.until(async () => (await options()).includes('1216x832'), "SDXL's trained sizes offered");
        assert.equal(await wd.exec('return document.querySelector(arguments[0]).value', param('steps')), '1', "the model's defaults");
        await setValue(param('aspect'), '1216x832');
        assert.deepEqual(
          await wd.exec('return [document.querySelector(arguments[0]).value, document.querySelector(arguments[1]).value]', param('width'), param('height')),
          ['1216', '832'],
        );
        await setValue(param('width'), 64);
        await setValue(param('height'), 64);
        await wd.exec('document.querySelector("#create-params details.size-conditions").open = true');
        await setValue('#create-prompt', 'a red fox in the snow');
        await setValue(param('seed'), 5);
        await setValue(param('original-width'), 128);
        await wd.until(async () => /both numbers/.test(await wd.text('#create-error')), 'half a size condition refused');
        await setValue(param('original-height'), 96);
        await generateEnabled();
        const before = await strip();
        await wd.click('#create-submit');
        await wd.until(async () => (await jobStates())[0] === 'done', 'the SDXL job done', 120000);
        await wd.until(async () => (await strip()) === before + 1, 'its image in the strip', 30000);
        await wd.click('#create-image');
        await wd.waitFor('#viewer[open] #viewer-recipe dd[data-field="model"]');
        assert.equal(await wd.text('#viewer-recipe dd[data-field="model"]'), 'sdxl-turbo');
        assert.equal(await wd.text('#viewer-recipe dd[data-field="sdxl-size-conditions"]'), 'original 128×96');
        await shot('sdxl.png');
        await wd.keys(Keys.ESCAPE);
        await wd.until(() => wd.exec('return !document.getElementById("viewer").open'), 'viewer closed');
        await setValue('#create-model', 'sd-1.5');
        await setValue('#create-prompt', '');
        await wd.until(async () => (await wd.text('#create-final')) === '(empty)', 'the prompt cleared');
        assert.equal(await wd.exec('return document.querySelector("#create-params details.size-conditions").hidden'), true, 'no SDXL conditioning for SD 1.5');

        // Deleting the download frees its files; the model stays in the catalog, to download again.
        await go('models');
        await wd.click(`${row} button[data-action="forget"]`);
        await wd.click('#confirm-ok');
        await wd.waitFor(`${row}[data-installed="false"] button[data-action="download"]`, 30000);
        const snapshots = join(work, 'hf', 'hub', 'models--stabilityai--sdxl-turbo', 'snapshots');
        assert.deepEqual(readdirSync(snapshots), [], 'the snapshot removed');
        assert.deepEqual(readdirSync(join(snapshots, '..', 'blobs')), [], 'its blobs deleted');
        await go('create');
      });
    }

    await step('a new project from Create, then two images with a style by Ctrl+Enter, with progress', async () => {
      await wd.click('#create-new-project');
      await wd.type('#project-name-input', 'E2E Generate');
      await wd.click('#project-save');
      await wd.until(() => wd.exec('return document.querySelector("#create-project").selectedOptions[0].textContent === "E2E Generate"'), 'the new project on Create');
      assert.equal(await wd.exec('return document.getElementById("create-submit").disabled'), true, 'Generate is disabled without a prompt');
      assert.match(await wd.text('#create-error'), /prompt/);
      await wd.exec(`window.__seen = []; window.__TAURI__.event.listen('job-progress', e => window.__seen.push(e.payload));`);
      await wd.type('#create-prompt', 'a photograph of an astronaut riding a horse on mars');
      await wd.exec('document.querySelector(\'#create-style-list label[data-style="Watercolor"] input\').click()');
      await wd.until(async () => (await wd.text('#create-final')).startsWith('watercolor painting of a photograph of an astronaut'), 'styled prompt');
      await setValue(param('width'), 128);
      await setValue(param('height'), 128);
      await setValue(param('steps'), 12);
      await setValue(param('count'), 2);
      await setValue(param('seed'), 7);
      await setValue(param('scheduler'), 'ddim');
      await generateEnabled();
      await wd.click('#create-prompt');
      await wd.keys(Keys.CONTROL, Keys.ENTER);
      await wd.waitFor('#create-jobs li');
      // textContent: WebKitWebDriver reads no text out of a line-clamped (-webkit-box) element.
      const jobWords = (css) => wd.exec('return document.querySelector(arguments[0])?.textContent', css);
      await wd.until(async () => (await jobWords('#create-jobs li .job-prompt')) === 'a photograph of an astronaut riding a horse on mars', 'the job list showing the words typed, not the styled prompt');
      await wd.until(async () => (await strip()) === 2, '2 results in the strip', 120000);
      await wd.until(async () => (await jobStates())[0] === 'done', 'job done');
      assert.equal(await tiles(), 2, 'both added to the library gallery in place');
      const shown = await wd.until(() => wd.exec(
        'const s = document.getElementById("create-stage"), i = document.getElementById("create-image"); return s.dataset.mode === "image" && i.complete && i.naturalWidth',
      ), 'the result large on the stage');
      assert.equal(shown, 128);
      const steps = await wd.exec('return window.__seen.filter(p => p.phase === "denoising").map(p => p.image * p.steps + p.step)');
      assert.ok(steps.length >= 12, `progress events: ${steps.length}`);
      assert.ok(steps.every((v, i) => i === 0 || v >= steps[i - 1]), 'progress only advances');
      assert.ok(await wd.exec('return window.__seen.some(p => p.eta_s !== null)'), 'an ETA is reported');
      await shot('create-done.png');
    });

    await step('a long job: the ETA in minutes and seconds, Esc cancels it, nothing saved', async () => {
      await setValue(param('width'), 512);
      await setValue(param('height'), 512);
      await setValue(param('steps'), 150);
      await setValue(param('count'), 1);
      await wd.exec('window.__seen = []');
      await generateEnabled();
      await wd.click('#create-submit');
      await wd.until(() => wd.exec('return window.__seen.some(p => p.phase === "denoising" && p.step >= 3)'), 'the long job running', 120000);
      const eta = await wd.until(async () => wd.text('#create-eta'), 'an ETA shown');
      assert.match(eta, ETA);
      assert.match(await wd.text('#create-phase'), /^Denoising · image 1\/1 · step \d+\/150$/);
      await shot('create-running.png');
      await wd.keys(Keys.ESCAPE);
      await wd.until(async () => (await jobStates())[0] === 'cancelled', 'job cancelled by Esc', 30000);
      assert.equal(await tiles(), 2, 'no image from the cancelled job');
      assert.equal(await strip(), 2);
    });

    await step('reuse parameters from the library and generate again: the same file, added in place', async () => {
      await go('library');
      await wd.exec('document.querySelector("#gallery .tile").click()');
      await wd.waitFor('#viewer[open] #viewer-recipe');
      assert.equal(await wd.text('#viewer-recipe dd[data-field="seed"]'), '8');
      assert.equal(await wd.text('#viewer-recipe dd[data-field="styles"]'), 'Watercolor');
      assert.match(await wd.text('#viewer-recipe dd[data-field="prompt"]'), /^watercolor painting of a photograph of an astronaut/);
      const sha = await wd.text('#viewer-recipe dd[data-field="sha-256"]');
      await wd.click('#viewer-reuse');
      await wd.waitFor('#screen-create');
      assert.equal(await wd.exec('return document.querySelector(arguments[0]).value', param('seed')), '8');
      assert.equal(await wd.exec('return document.querySelector(arguments[0]).value', param('width')), '128');
      assert.equal(await wd.exec('return document.getElementById("create-prompt").value'), 'a photograph of an astronaut riding a horse on mars');
      await wd.exec('for (const t of document.querySelectorAll("#gallery .tile")) t.dataset.e2eOld = "1"');
      await generateEnabled();
      await wd.keys(Keys.CONTROL, Keys.ENTER);
      await wd.until(async () => (await tiles()) === 3, 'the regenerated image', 120000);
      assert.equal(await count('#gallery .tile[data-e2e-old]'), 2, 'the gallery kept its tiles (no reload)');
      await wd.until(() => wd.exec(
        'const s = document.querySelector("#create-stage"), first = document.querySelector("#create-strip .thumb"); return s.dataset.mode === "image" && first.classList.contains("current")',
      ), 'the new image on the stage');
      await wd.click('#create-image');
      await wd.until(async () => (await wd.text('#viewer-recipe dd[data-field="sha-256"]')) === sha, 'identical file hash');
      await wd.keys(Keys.ESCAPE);
      await wd.until(() => wd.exec('return !document.getElementById("viewer").open'), 'viewer closed');
    });

    await step('start from a gallery image: paint a mask, inpaint, upscale ×2; reuse remakes the inpainted file', async () => {
      await go('library');
      await wd.exec('document.querySelector("#gallery .tile").click()');
      await wd.waitFor('#viewer[open] #viewer-use-input');
      await wd.click('#viewer-use-input');
      await wd.waitFor('#screen-create');
      await wd.until(() => wd.exec('return document.getElementById("create-input").dataset.mode === "img2img"'), 'the image chosen to start from');
      assert.equal(await wd.exec('return document.querySelector(arguments[0]).value', param('width')), '128', 'the size of the image');
      await wd.exec('document.getElementById("create-input-mask").click()');
      await wd.waitFor('#mask-dialog[open] #mask-canvas');
      await wd.until(() => wd.exec('return document.getElementById("mask-image").complete && document.getElementById("mask-canvas").width === 128'), 'the painter at the image size');
      // A stroke across the middle, as a mouse would draw it.
      await wd.exec(`
        const c = document.getElementById('mask-canvas'), r = c.getBoundingClientRect();
        const at = (type, fx, fy) => c.dispatchEvent(new PointerEvent(type, { clientX: r.left + r.width * fx, clientY: r.top + r.height * fy, pointerId: 1, bubbles: true }));
        at('pointerdown', 0.3, 0.4); at('pointermove', 0.5, 0.5); at('pointermove', 0.7, 0.6); at('pointerup', 0.7, 0.6);`);
      const painted = await wd.exec(`
        const c = document.getElementById('mask-canvas'), d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let white = 0; for (let i = 0; i < d.length; i += 4) if (d[i] > 127) white++; return white;`);
      assert.ok(painted > 500 && painted < 128 * 128 / 2, `painted pixels: ${painted}`);
      await shot('mask-painter.png');
      await wd.click('#mask-save');
      await wd.until(() => wd.exec('return document.getElementById("create-input").dataset.mode === "inpaint"'), 'the mask in use');
      assert.equal(await wd.text('#create-strength-value'), '1.00', 'a painted area is redrawn whole');
      await setValue('#create-strength', 0.8);
      await setValue(param('steps'), 8);
      await setValue(param('seed'), 11);
      await generateEnabled();
      await shot('create-inpaint.png');
      await wd.click('#create-submit');
      await go('library');
      await wd.until(async () => (await tiles()) === 4, 'the inpainted image', 120000);
      await go('create');
      await wd.click('#create-image');
      await wd.waitFor('#viewer[open] #viewer-recipe');
      assert.match(await wd.text('#viewer-recipe dd[data-field="started-from"]'), /^inpaint · strength 0\.8 · kept pixels pasted back · image [0-9a-f]{12}$/);
      const inpainted = await wd.text('#viewer-recipe dd[data-field="sha-256"]');
      await wd.click('#viewer-upscale-2');
      await wd.until(async () => (await wd.text('#viewer-recipe dd[data-field="upscaled"]')) === '×2 (lanczos)', 'the upscaled image in the viewer', 60000);
      assert.match(await wd.text('#viewer-recipe dd[data-field="pixels"]'), /^256×256 PNG$/);
      assert.match(await wd.text('#viewer-recipe dd[data-field="started-from"]'), /^inpaint/, 'the recipe carried over');
      await shot('viewer-upscaled.png');
      await wd.keys(Keys.ESCAPE);
      await wd.until(() => wd.exec('return !document.getElementById("viewer").open'), 'viewer closed');
      await go('library');
      await wd.until(async () => (await tiles()) === 5, 'the upscaled image in the gallery');
      // Reuse the inpainted image's parameters: the same image, mask and strength; the same file.
      await go('create');
      await wd.exec('document.querySelectorAll("#create-strip .thumb")[1].click()');
      await wd.until(async () => (await wd.exec('return document.getElementById("create-caption").textContent')).includes("128×128 · seed 11"), "the inpainted image on the stage");
      await wd.exec('document.querySelector("#create-input-clear").click()');
      await wd.click('#create-reuse');
      await wd.until(() => wd.exec('return document.getElementById("create-input").dataset.mode === "inpaint"'), 'the input restored from the recipe');
      assert.equal(await wd.text('#create-strength-value'), '0.80');
      assert.equal(await wd.exec('return document.querySelector(arguments[0]).value', param('seed')), '11');
      await generateEnabled();
      await wd.click('#create-submit');
      await go('library');
      await wd.until(async () => (await tiles()) === 6, 'the remade image', 120000);
      await go('create');
      await wd.click('#create-image');
      await wd.until(async () => (await wd.text('#viewer-recipe dd[data-field="sha-256"]')) === inpainted, 'the inpainted file remade bit for bit');
      await wd.keys(Keys.ESCAPE);
      await wd.until(() => wd.exec('return !document.getElementById("viewer").open'), 'viewer closed');
      await wd.exec('document.getElementById("create-input-clear").click()');
      await wd.until(() => wd.exec('return document.getElementById("create-input").dataset.mode === "none"'), 'back to text to image');
    });

    await step('choose an ESRGAN upscaler in Settings; Upscale ×4 uses it', async () => {
      await go('settings');
      assert.equal(await wd.text('#upscaler-name'), 'Lanczos');
      await wd.click('#upscaler-choose');
      await wd.until(async () => (await wd.text('#upscaler-name')) === 'x4', 'the upscaler chosen');
      assert.match(await wd.text('#upscaler-detail'), /^\(ESRGAN ×4, .*x4\.safetensors\)$/);
      await go('library');
      const before = await tiles();
      await wd.exec('document.querySelector("#gallery .tile").click()');
      await wd.waitFor('#viewer[open] #viewer-upscale-4');
      await wd.click('#viewer-upscale-4');
      await wd.until(async () => (await wd.text('#viewer-recipe dd[data-field="upscaled"]')) === '×4 (x4)', 'the ESRGAN-upscaled image', 120000);
      assert.match(await wd.text('#viewer-recipe dd[data-field="pixels"]'), /^512×512 PNG$/);
      // Its tiles were counted in the progress dialog (one 128² tile), which closed at the end.
      const progress = (id) => wd.exec(`return document.getElementById('${id}').textContent`);
      assert.equal(await progress('progress-title'), 'Upscaling ×4');
      await wd.until(async () => (await progress('progress-text')) === '1 of 1 · finishing', 'the upscale progress event');
      assert.equal(await wd.exec('return document.getElementById("progress-dialog").open'), false, 'the progress dialog closed');
      await wd.keys(Keys.ESCAPE);
      await wd.until(() => wd.exec('return !document.getElementById("viewer").open'), 'viewer closed');
      await wd.until(async () => (await tiles()) === before + 1, 'the upscaled image in the gallery');
      await go('settings');
      await wd.click('#upscaler-clear');
      await wd.until(async () => (await wd.text('#upscaler-name')) === 'Lanczos', 'back to Lanczos');
    });

    if (cloud) {
      await step('sign up, confirm and log in on the Account screen', async () => {
        assert.equal(await wd.exec('return document.querySelector(\'#create-backend option[value="cloud"]\').disabled'), true, 'cloud needs a login');
        await go('account');
        await wd.waitFor('#screen-account #account-login');
        await wd.exec('document.querySelector("#account-login [data-go=signup]").click()');
        await wd.type('#signup-email', 'e2e@example.com');
        await wd.type('#signup-username', 'e2e-user');
        await wd.type('#signup-password', 'short');
        await wd.click('#signup-submit');
        await wd.until(async () => (await wd.text('#account-error')).includes('too weak'), 'the weak password refused');
        await setValue('#signup-password', 'Sunlit7Lighthouse');
        await wd.click('#signup-submit');
        const view = () => wd.exec('return document.getElementById("screen-account").dataset.view');
        await wd.until(async () => (await view()) === 'confirm', 'the confirm view');
        assert.equal(await wd.exec('return document.getElementById("confirm-username").value'), 'e2e-user');
        // Logging in before confirming offers the confirmation form again (error kind not_confirmed).
        await wd.exec('document.querySelector("#account-confirm [data-go=login]").click()');
        await setValue('#login-password', 'Sunlit7Lighthouse');
        await wd.click('#login-submit');
        await wd.until(async () => (await view()) === 'confirm', 'offered to confirm');
        assert.match(await wd.text('#account-error'), /not confirmed/);
        await wd.type('#confirm-code', '123456');
        await wd.click('#confirm-submit');
        await wd.until(async () => (await view()) === 'login', 'back to log in');
        assert.equal(await wd.exec('return document.getElementById("login-username").value'), 'e2e-user');
        await setValue('#login-password', 'Wrong7Password');
        await wd.click('#login-submit');
        await wd.until(async () => (await wd.text('#account-error')) === 'wrong username or password', 'a wrong password refused');
        await setValue('#login-password', 'Sunlit7Lighthouse');
        await wd.click('#login-submit');
        await wd.until(async () => (await view()) === 'signed-in', 'signed in');
        assert.equal(await wd.text('#account-username'), 'e2e-user');
        // textContent: WebKitWebDriver reads no text out of an element with text-overflow: ellipsis.
        await wd.until(async () => (await wd.exec('return document.getElementById("account-label").textContent')) === 'e2e-user', 'the rail naming the user');
        assert.equal(await wd.text('#toast'), 'Signed in as e2e-user', 'one toast at a time: the newest replaced "Account confirmed"');
        await shot('account.png');
      });

      await step('make an API key on the Account screen, call the server with it, then revoke it', async () => {
        await wd.until(() => wd.exec('return document.getElementById("api-key-empty").textContent === "No keys yet."'), 'no keys yet');
        await wd.click('#api-key-create');
        assert.match(await wd.text('#account-error'), /Name is empty/, 'a key needs a name');
        await wd.type('#api-key-name', 'nightly script');
        await wd.click('#api-key-create');
        await wd.until(() => wd.exec('return !document.getElementById("api-key-made").hidden'), 'the new key shown');
        const key = await wd.exec('return document.getElementById("api-key-value").textContent');
        assert.match(key, /^sdk_[0-9a-f]{64}$/);
        await wd.until(() => wd.exec('return document.querySelectorAll("#api-key-list li").length === 1'), 'the key listed');
        assert.equal(await wd.exec('return document.querySelector("#api-key-list .api-key-name").textContent'), 'nightly script');
        const generation = (k) => fetch(`${cloud.serverUrl}/v1/generations/no-such-job`, { headers: { 'X-API-Key': k } });
        assert.equal((await generation(key)).status, 404, 'the key is accepted (the job is simply missing)');
        await shot('api-keys.png');
        await wd.exec('document.querySelector("#api-key-list li button.danger").click()');
        await wd.until(() => wd.exec('return document.querySelector("#api-key-list li")?.textContent.includes("revoked")'), 'the key shown revoked');
        assert.equal((await generation(key)).status, 401, 'a revoked key is refused');
      });

      await step('generate one image in the cloud with a style: the viewer shows the server\'s scheduler and styles; Upscale ×2 runs on the server', async () => {
        await go('create');
        const before = await strip();
        const beforeTiles = await tiles();
        assert.equal(await wd.exec('return document.querySelector(\'#create-backend option[value="cloud"]\').disabled'), false);
        await setValue('#create-backend', 'cloud');
        await setValue('#create-prompt', 'a lighthouse seen from the cloud');
        await wd.exec('for (const c of document.querySelectorAll("#create-style-chosen .chip")) c.click()');
        await wd.exec('document.querySelector(\'#create-style-list label[data-style="Watercolor"] input\').click()');
        await wd.until(async () => (await wd.text('#create-final')).startsWith('watercolor painting of a lighthouse seen from the cloud'), 'styled prompt');
        await setValue(param('width'), 128);
        await setValue(param('height'), 128);
        await setValue(param('steps'), 4);
        await setValue(param('count'), 5);
        await wd.until(async () => (await wd.text('#create-error')).includes('between 1 and 4 in the cloud'), 'the cloud count limit, from the server');
        assert.equal(await wd.exec('return document.querySelector(arguments[0]).max', param('count')), '4', 'the count field bounded by the cloud limits');
        await setValue(param('count'), 1);
        await setValue(param('seed'), 21);
        await generateEnabled();
        await wd.click('#create-submit');
        await wd.waitFor('#create-jobs li[data-backend="cloud"]');
        await wd.until(async () => (await wd.exec('return document.querySelector(\'#create-jobs li[data-backend="cloud"] .job-prompt\').textContent')) === 'a lighthouse seen from the cloud', 'the cloud job showing the words typed');
        await wd.until(() => wd.exec('return document.querySelector(\'#create-jobs li[data-backend="cloud"]\').dataset.state === "done"'), 'cloud job done', 120000);
        await wd.until(async () => (await strip()) === before + 1, 'the cloud image in the strip', 30000);
        assert.equal(await tiles(), beforeTiles + 1, 'and in the library gallery');
        await wd.until(() => wd.exec('return document.querySelector("#create-stage").dataset.mode === "image"'), 'the cloud image on the stage');
        await wd.click('#create-image');
        await wd.waitFor('#viewer[open] #viewer-recipe');
        assert.equal(await wd.text('#viewer-recipe dd[data-field="backend"]'), 'cloud');
        assert.match(await wd.text('#viewer-recipe dd[data-field="cloud-job"]'), /^[0-9a-f-]{36}$/);
        assert.equal(await wd.text('#viewer-recipe dd[data-field="seed"]'), '21');
        assert.equal(await wd.text('#viewer-recipe dd[data-field="styles"]'), 'Watercolor', 'the styles the server applied');
        assert.match(await wd.text('#viewer-recipe dd[data-field="scheduler"]'), /\S/, 'the scheduler the server used');
        assert.match(await wd.text('#viewer-recipe dd[data-field="prompt"]'), /^watercolor painting of a lighthouse seen from the cloud/);
        await shot('cloud-image.png');
        // With Cloud as the backend, the viewer's upscale runs on the server too.
        assert.match(await wd.exec('return document.getElementById("viewer-upscale-2").title'), /on the cloud server/);
        const [width, height] = (await wd.text('#viewer-recipe dd[data-field="pixels"]')).split(' ')[0].split('×').map(Number);
        await wd.click('#viewer-upscale-2');
        await wd.until(async () => (await wd.text('#viewer-recipe dd[data-field="upscaled"]')) === '×2 (lanczos)', 'the image upscaled on the server', 120000);
        assert.equal(await wd.text('#viewer-recipe dd[data-field="pixels"]'), `${width * 2}×${height * 2} PNG`);
        assert.match(await wd.text('#viewer-recipe dd[data-field="prompt"]'), /^watercolor painting of a lighthouse seen from the cloud/, 'the recipe carried over');
        assert.match(await wd.text('#viewer-title'), /-x2\.png$/);
        await wd.until(async () => (await tiles()) === beforeTiles + 2, 'the upscaled copy in the library gallery');
        await wd.keys(Keys.ESCAPE);
        await wd.until(() => wd.exec('return !document.getElementById("viewer").open'), 'viewer closed');
      });

      await step('a cloud job outlives closing the app: the next start follows it to the gallery', async () => {
        const pendingFile = join(work, 'config', 'app.selfdiffusion.desktop', 'cloud-jobs.json');
        const pending = () => (existsSync(pendingFile) ? JSON.parse(readFileSync(pendingFile, 'utf8')) : []);
        const projectId = await wd.exec('return document.getElementById("create-project").value');
        const before = await tiles();
        await setValue(param('steps'), 100);
        await setValue(param('count'), 4);
        await generateEnabled();
        await wd.click('#create-submit');
        await wd.until(() => pending().length === 1, 'the submitted job written down', 30000);
        const [job] = pending();
        assert.equal(String(job.project_id), projectId);
        const state = await wd.exec('return document.querySelector(\'#create-jobs li[data-backend="cloud"]\').dataset.state');
        assert.ok(state === 'queued' || state === 'running', `still on the server when the app closes (${state})`);
        await wd.quit();
        await wd.start({ browserName: 'wry', 'tauri:options': { application: app } });
        await wd.until(() => wd.exec('return document.body.dataset.ready === "true"'), 'app ready again', 60000);
        await setValue('#create-project', projectId);
        await wd.until(() => wd.exec('const li = document.querySelector(\'#create-jobs li[data-backend="cloud"]\'); return li && li.dataset.state === "done"'), 'the resumed job done', 180000);
        await wd.until(async () => (await tiles()) === before + 4, 'its four images in the gallery', 30000);
        assert.deepEqual(pending(), [], 'the job is crossed off');
        assert.equal(await wd.exec('return document.getElementById("account-label").textContent'), 'e2e-user', 'still signed in after the restart');
        await setValue('#create-backend', 'cloud');
        await setValue(param('width'), 128);
        await setValue(param('height'), 128);
        await setValue(param('steps'), 4);
        await setValue(param('count'), 1);
        await setValue('#create-prompt', 'a lighthouse seen from the cloud');
      });

      await step('with the server gone: a clear offline message, and local generation still works', async () => {
        cloud.stopServer();
        const before = await tiles();
        await wd.until(async () => (await wd.text('#create-final')).startsWith('a lighthouse'), 'the prompt sent');
        await generateEnabled();
        await wd.click('#create-submit');
        const failedJob = '#create-jobs li[data-backend="cloud"][data-state="failed"]';
        await wd.waitFor(failedJob, 60000);
        assert.match(await wd.text(failedJob), /offline \(local generation still works\)/);
        await setValue('#create-backend', 'local');
        await generateEnabled();
        await wd.click('#create-submit');
        await wd.until(async () => (await tiles()) === before + 1, 'a local image while offline', 120000);
      });
    } else {
      console.log('e2e: cloud steps skipped: moto_server not found (scripts/test.sh installs it)');
    }
  } else {
    console.log(`e2e: generation steps skipped: no tiny model at ${tinyModel} (set SELFDIFFUSION_FIXTURES)`);
  }

  await step('delete the projects', async () => {
    await go('library');
    const n = await count('#project-list .project');
    for (let left = n - 1; left >= 0; left -= 1) {
      await wd.click('#delete-project');
      await wd.click('#confirm-ok');
      await wd.until(async () => (await count('#project-list .project')) === left, `${left} project(s) left`);
    }
    await wd.waitFor('#library-empty');
    const left = existsSync(join(library, 'images')) ? readdirSync(join(library, 'images')) : [];
    assert.deepEqual(left, [], 'project files removed');
    await shot('empty.png');
  });
} catch (e) {
  failed = true;
  console.error(`\ne2e FAILED: ${e.stack || e}`);
  try { writeFileSync(join(shots, 'failure.png'), await wd.screenshot()); } catch { /* no session */ }
} finally {
  await wd.quit();
  driver.kill('SIGTERM'); // SIGKILL would leave WebKitWebDriver holding the pipes
  if (hub) await hub.close();
  if (cloud) cloud.close();
  rmSync(work, { recursive: true, force: true });
}
console.log(failed ? 'e2e: failed' : `e2e: all steps passed; screenshots in ${shots}`);
process.exit(failed ? 1 : 0);
