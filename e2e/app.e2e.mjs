// End-to-end test through the real WebView: tauri-driver + WebKitWebDriver drive the built app
// on a temp library. Usage: node e2e/app.e2e.mjs <path to the app binary> [screenshot dir]
import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, writeFileSync, existsSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, delimiter, resolve } from 'node:path';
import assert from 'node:assert/strict';
import { WebDriver } from './webdriver.mjs';
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
const hub = haveModel ? await startHub(tinyModel, 'unet/diffusion_pytorch_model.fp16.safetensors') : null;
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

let failed = false;
try {
  await wd.until(async () => (await fetch(`http://127.0.0.1:${port}/status`)).ok, 'tauri-driver', 30000);
  await wd.start({ browserName: 'wry', 'tauri:options': { application: app } });

  await step('app loads with an empty library', async () => {
    await wd.until(() => wd.exec('return document.body.dataset.ready === "true"'), 'app ready', 60000);
    await wd.waitFor('#no-project');
  });

  await step('create a project', async () => {
    await wd.click('#empty-new-project');
    await wd.type('#project-name-input', 'E2E Landscapes');
    await wd.type('#project-description-input', 'made by the end-to-end test');
    await wd.click('#project-save');
    await wd.until(async () => (await wd.text('#project-name')) === 'E2E Landscapes', 'project header');
    const items = await wd.exec('return [...document.querySelectorAll("#project-list .project-item-name")].map(e => e.textContent)');
    assert.deepEqual(items, ['E2E Landscapes']);
  });

  await step('a duplicate name is refused with a clear message', async () => {
    await wd.click('#new-project');
    await wd.type('#project-name-input', 'e2e landscapes');
    await wd.click('#project-save');
    const msg = await wd.until(async () => wd.text('#project-form-error'), 'form error');
    assert.match(msg, /already exists/);
    await wd.exec('document.getElementById("project-dialog").close()');
  });

  await step('import images and see them in the gallery', async () => {
    await wd.click('#import-files');
    await wd.until(() => wd.exec('return document.querySelectorAll("#gallery .tile").length === 3'), '3 tiles');
    const loaded = await wd.until(() => wd.exec(
      'const imgs = [...document.querySelectorAll("#gallery .tile img")]; return imgs.every(i => i.complete && i.naturalWidth > 0) && imgs.length',
    ), 'thumbnails to load through the asset protocol');
    assert.equal(loaded, 3);
    assert.match(await wd.text('#project-stats'), /^3 images/);
    await settle();
    writeFileSync(join(shots, 'gallery.png'), await wd.screenshot());
  });

  await step('open an image and read its parameters', async () => {
    await wd.click('#gallery .tile:last-child');
    await wd.waitFor('#viewer[open] #viewer-recipe');
    assert.equal(await wd.text('#viewer-recipe dd[data-field="prompt"]'), prompts[0]);
    assert.equal(await wd.text('#viewer-recipe dd[data-field="negative-prompt"]'), 'blurry');
    assert.equal(await wd.text('#viewer-recipe dd[data-field="seed"]'), '1000');
    assert.equal(await wd.text('#viewer-recipe dd[data-field="steps"]'), '20');
    const full = await wd.until(() => wd.exec('const i = document.getElementById("viewer-img"); return i.complete && i.naturalWidth'), 'full image');
    assert.equal(full, 96);
    await settle();
    writeFileSync(join(shots, 'viewer.png'), await wd.screenshot());
    await wd.click('#viewer-close');
  });

  await step('search filters by prompt', async () => {
    await wd.type('#search', 'fox');
    await wd.until(() => wd.exec('return document.querySelectorAll("#gallery .tile").length === 1'), '1 tile after search');
    await wd.type('#search', '');
    await wd.exec('const s = document.getElementById("search"); s.dispatchEvent(new Event("input"))');
    await wd.until(() => wd.exec('return document.querySelectorAll("#gallery .tile").length === 3'), '3 tiles again');
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
    await wd.click('#new-project');
    await wd.type('#project-name-input', 'E2E Archive');
    await wd.click('#project-save');
    await wd.until(async () => (await wd.text('#project-name')) === 'E2E Archive', 'archive selected');
    const archiveId = await wd.exec('return Number(document.querySelector("#project-list .project.active").dataset.projectId)');
    await wd.exec('[...document.querySelectorAll("#project-list .project")].find(e => e.textContent.includes("E2E Renamed")).click()');
    await wd.until(() => wd.exec('return document.querySelectorAll("#gallery .tile").length === 3'), '3 tiles in the first project');
    await wd.exec('document.querySelector("#gallery .tile").dispatchEvent(new MouseEvent("click", { bubbles: true, ctrlKey: true }))');
    assert.equal(await wd.text('#selection-count'), '1 selected');
    await wd.exec('const s = document.getElementById("selection-move"); s.value = String(arguments[0]); s.dispatchEvent(new Event("change"))', archiveId);
    await wd.until(() => wd.exec('return document.querySelectorAll("#gallery .tile").length === 2'), '2 tiles left');
    await wd.until(() => wd.exec(
      'return [...document.querySelectorAll("#project-list .project")].find(e => e.textContent.includes("E2E Archive")).textContent.includes("1 image")',
    ), 'archive shows 1 image');
  });

  if (haveModel) {
    const tiles = () => wd.exec('return document.querySelectorAll("#gallery .tile").length');
    const setValue = (id, value) => wd.exec(
      'const e = document.getElementById(arguments[0]); e.value = arguments[1]; e.dispatchEvent(new Event("input")); e.dispatchEvent(new Event("change"))',
      id, String(value),
    );
    const jobStates = () => wd.exec('return [...document.querySelectorAll("#job-list li")].map(li => li.dataset.state)');

    await step('download the default model: cut midway, then resumed', async () => {
      await wd.click('#new-project');
      await wd.type('#project-name-input', 'E2E Generate');
      await wd.click('#project-save');
      await wd.until(async () => (await wd.text('#project-name')) === 'E2E Generate', 'generate project');
      assert.match(await wd.text('#model-download'), /^Download Stable Diffusion 1\.5 \(about 2\.1 GB\)$/);
      await wd.click('#model-download');
      await wd.until(async () => (await wd.text('#toasts')).includes('transfer failed'), 'the cut download reported', 60000);
      await wd.until(() => wd.exec('return !document.getElementById("model-download").disabled'), 'download offered again');
      await wd.click('#model-download');
      await wd.until(() => wd.exec('return document.getElementById("gen-model-hint").hidden'), 'sd-1.5 installed', 60000);
      assert.equal(await wd.exec('return document.getElementById("gen-model").value'), 'sd-1.5');
      const resumed = hub.requests.filter((r) => r.range && r.url.startsWith('/blobs/'));
      assert.equal(resumed.length, 1, `one ranged request resumes the cut file: ${JSON.stringify(hub.requests)}`);
      assert.ok(Number(/bytes=(\d+)-/.exec(resumed[0].range)[1]) > 0, 'it resumes past the bytes already fetched');
      const configs = hub.requests.filter((r) => r.method === 'GET' && r.url.endsWith('model_index.json'));
      assert.equal(configs.length, 1, 'files already complete are not fetched again');
    });

    await step('generate two images with a style and watch progress', async () => {
      assert.equal(await wd.exec('return document.getElementById("gen-submit").disabled'), true, 'Generate is disabled without a prompt');
      assert.match(await wd.text('#gen-error'), /prompt/);
      await wd.exec(`window.__seen = []; window.__TAURI__.event.listen('job-progress', e => window.__seen.push(e.payload));`);
      await wd.type('#gen-prompt', 'a photograph of an astronaut riding a horse on mars');
      await wd.exec('document.querySelector(\'#style-list label[data-style="Watercolor"] input\').click()');
      await wd.until(async () => (await wd.text('#gen-final')).startsWith('watercolor painting of a photograph of an astronaut'), 'styled prompt');
      await setValue('gen-width', 128);
      await setValue('gen-height', 128);
      await setValue('gen-steps', 12);
      await setValue('gen-count', 2);
      await setValue('gen-seed', 7);
      await setValue('gen-scheduler', 'ddim');
      await wd.until(() => wd.exec('return !document.getElementById("gen-submit").disabled'), 'Generate enabled');
      await wd.click('#gen-submit');
      await wd.until(async () => (await tiles()) === 2, '2 generated images in the gallery', 120000);
      await wd.until(async () => (await jobStates()).includes('done'), 'job done');
      const steps = await wd.exec('return window.__seen.filter(p => p.phase === "denoising").map(p => p.image * p.steps + p.step)');
      assert.ok(steps.length >= 12, `progress events: ${steps.length}`);
      assert.ok(steps.every((v, i) => i === 0 || v >= steps[i - 1]), 'progress only advances');
      assert.ok(await wd.exec('return window.__seen.some(p => p.eta_s !== null)'), 'an ETA is reported');
    });

    await step('cancel a long job midway: nothing saved for it', async () => {
      await setValue('gen-width', 512);
      await setValue('gen-height', 512);
      await setValue('gen-steps', 150);
      await setValue('gen-count', 1);
      await wd.exec('window.__seen = []');
      await wd.click('#gen-submit');
      await wd.until(() => wd.exec('return window.__seen.some(p => p.phase === "denoising" && p.step >= 3)'), 'the long job running', 120000);
      await settle();
      writeFileSync(join(shots, 'generate-running.png'), await wd.screenshot());
      await wd.click('#job-list li[data-state="running"] button[data-action="cancel"]');
      await wd.until(async () => (await jobStates())[0] === 'cancelled', 'job cancelled', 30000);
      assert.equal(await tiles(), 2, 'no image from the cancelled job');
    });

    await step('reuse parameters and generate again: the same file', async () => {
      await wd.exec('document.querySelector("#gallery .tile").click()');
      await wd.waitFor('#viewer[open] #viewer-recipe');
      assert.equal(await wd.text('#viewer-recipe dd[data-field="seed"]'), '8');
      assert.equal(await wd.text('#viewer-recipe dd[data-field="styles"]'), 'Watercolor');
      assert.match(await wd.text('#viewer-recipe dd[data-field="prompt"]'), /^watercolor painting of a photograph of an astronaut/);
      const sha = await wd.text('#viewer-recipe dd[data-field="sha-256"]');
      await wd.click('#viewer-reuse');
      assert.equal(await wd.exec('return document.getElementById("gen-seed").value'), '8');
      assert.equal(await wd.exec('return document.getElementById("gen-width").value'), '128');
      await wd.until(() => wd.exec('return !document.getElementById("gen-submit").disabled'), 'Generate enabled');
      await wd.click('#gen-submit');
      await wd.until(async () => (await tiles()) === 3, 'the regenerated image', 120000);
      await wd.exec('document.querySelector("#gallery .tile").click()');
      await wd.until(async () => (await wd.text('#viewer-recipe dd[data-field="sha-256"]')) === sha, 'identical file hash');
      await wd.click('#viewer-close');
      await settle();
      writeFileSync(join(shots, 'generate-gallery.png'), await wd.screenshot());
    });

    if (cloud) {
      await step('sign up, confirm and log in on the account screen', async () => {
        assert.equal(await wd.exec('return document.querySelector(\'#gen-backend option[value="cloud"]\').disabled'), true, 'cloud needs a login');
        await wd.click('#open-account');
        await wd.waitFor('#account-dialog[open] #account-login');
        await wd.exec('document.querySelector("#account-login [data-go=signup]").click()');
        await wd.type('#signup-email', 'e2e@example.com');
        await wd.type('#signup-username', 'e2e-user');
        await wd.type('#signup-password', 'short');
        await wd.click('#signup-submit');
        await wd.until(async () => (await wd.text('#account-error')).includes('too weak'), 'the weak password refused');
        await setValue('signup-password', 'Sunlit7Lighthouse');
        await wd.click('#signup-submit');
        await wd.until(() => wd.exec('return document.getElementById("account-dialog").dataset.view === "confirm"'), 'the confirm view');
        assert.equal(await wd.exec('return document.getElementById("confirm-username").value'), 'e2e-user');
        // Logging in before confirming offers the confirmation form again.
        await wd.exec('document.querySelector("#account-confirm [data-go=login]").click()');
        await setValue('login-password', 'Sunlit7Lighthouse');
        await wd.click('#login-submit');
        await wd.until(() => wd.exec('return document.getElementById("account-dialog").dataset.view === "confirm"'), 'offered to confirm');
        assert.match(await wd.text('#account-error'), /not confirmed/);
        await wd.type('#confirm-code', '123456');
        await wd.click('#confirm-submit');
        await wd.until(() => wd.exec('return document.getElementById("account-dialog").dataset.view === "login"'), 'back to log in');
        assert.equal(await wd.exec('return document.getElementById("login-username").value'), 'e2e-user');
        await setValue('login-password', 'Wrong7Password');
        await wd.click('#login-submit');
        await wd.until(async () => (await wd.text('#account-error')) === 'wrong username or password', 'a wrong password refused');
        await setValue('login-password', 'Sunlit7Lighthouse');
        await wd.click('#login-submit');
        await wd.until(() => wd.exec('return document.getElementById("account-dialog").dataset.view === "signed-in"'), 'signed in');
        assert.equal(await wd.text('#account-username'), 'e2e-user');
        assert.equal(await wd.text('#account-label'), 'e2e-user');
        await settle();
        writeFileSync(join(shots, 'account.png'), await wd.screenshot());
        await wd.click('#account-close');
      });

      await step('generate one image in the cloud into the same gallery', async () => {
        const before = await tiles();
        assert.equal(await wd.exec('return document.querySelector(\'#gen-backend option[value="cloud"]\').disabled'), false);
        await setValue('gen-backend', 'cloud');
        await setValue('gen-prompt', 'a lighthouse seen from the cloud');
        await setValue('gen-width', 128);
        await setValue('gen-height', 128);
        await setValue('gen-steps', 4);
        await setValue('gen-count', 5);
        await wd.until(async () => (await wd.text('#gen-error')).includes('between 1 and 4 in the cloud'), 'cloud count limit');
        await setValue('gen-count', 1);
        await setValue('gen-seed', 21);
        await wd.until(() => wd.exec('return !document.getElementById("gen-submit").disabled'), 'Generate enabled');
        await wd.click('#gen-submit');
        await wd.waitFor('#job-list li[data-backend="cloud"]');
        await wd.until(() => wd.exec('return document.querySelector(\'#job-list li[data-backend="cloud"]\').dataset.state === "done"'), 'cloud job done', 120000);
        await wd.until(async () => (await tiles()) === before + 1, 'the cloud image in the gallery', 30000);
        await wd.exec('document.querySelector("#gallery .tile").click()');
        await wd.waitFor('#viewer[open] #viewer-recipe');
        assert.equal(await wd.text('#viewer-recipe dd[data-field="backend"]'), 'cloud');
        assert.match(await wd.text('#viewer-recipe dd[data-field="cloud-job"]'), /^[0-9a-f-]{36}$/);
        assert.equal(await wd.text('#viewer-recipe dd[data-field="seed"]'), '21');
        await settle();
        writeFileSync(join(shots, 'cloud-image.png'), await wd.screenshot());
        await wd.click('#viewer-close');
      });

      await step('a cloud job outlives closing the app: the next start follows it to the gallery', async () => {
        const pendingFile = join(work, 'config', 'app.selfdiffusion.desktop', 'cloud-jobs.json');
        const pending = () => (existsSync(pendingFile) ? JSON.parse(readFileSync(pendingFile, 'utf8')) : []);
        const projectId = await wd.exec('return document.querySelector("#project-list .project.active").dataset.projectId');
        const before = await tiles();
        await setValue('gen-steps', 100);
        await setValue('gen-count', 4);
        await wd.until(() => wd.exec('return !document.getElementById("gen-submit").disabled'), 'Generate enabled');
        await wd.click('#gen-submit');
        await wd.until(() => pending().length === 1, 'the submitted job written down', 30000);
        const [job] = pending();
        assert.equal(String(job.project_id), projectId);
        const state = await wd.exec('return document.querySelector(\'#job-list li[data-backend="cloud"]\').dataset.state');
        assert.ok(state === 'queued' || state === 'running', `still on the server when the app closes (${state})`);
        await wd.quit();
        await wd.start({ browserName: 'wry', 'tauri:options': { application: app } });
        await wd.until(() => wd.exec('return document.body.dataset.ready === "true"'), 'app ready again', 60000);
        await wd.exec('document.querySelector(`#project-list .project[data-project-id="${arguments[0]}"]`).click()', projectId);
        await wd.until(() => wd.exec('const li = document.querySelector(\'#job-list li[data-backend="cloud"]\'); return li && li.dataset.state === "done"'), 'the resumed job done', 180000);
        await wd.until(async () => (await tiles()) === before + 4, 'its four images in the gallery', 30000);
        assert.deepEqual(pending(), [], 'the job is crossed off');
        assert.equal(await wd.text('#account-label'), 'e2e-user', 'still signed in after the restart');
        await setValue('gen-width', 128);
        await setValue('gen-height', 128);
        await setValue('gen-steps', 4);
        await setValue('gen-count', 1);
        await setValue('gen-prompt', 'a lighthouse seen from the cloud');
        await setValue('gen-backend', 'cloud');
      });

      await step('with the server gone: a clear offline message, and local generation still works', async () => {
        cloud.stopServer();
        const before = await tiles();
        await wd.until(async () => (await wd.text('#gen-final')).startsWith('a lighthouse'), 'the prompt sent');
        await wd.until(() => wd.exec('return !document.getElementById("gen-submit").disabled'), 'Generate enabled');
        await wd.click('#gen-submit');
        const failed = '#job-list li[data-backend="cloud"][data-state="failed"]';
        await wd.waitFor(failed, 60000);
        assert.match(await wd.text(failed), /offline \(local generation still works\)/);
        await setValue('gen-backend', 'local');
        await wd.until(() => wd.exec('return !document.getElementById("gen-submit").disabled'), 'Generate enabled');
        await wd.click('#gen-submit');
        await wd.until(async () => (await tiles()) === before + 1, 'a local image while offline', 120000);
      });
    } else {
      console.log('e2e: cloud steps skipped: moto_server not found (scripts/test.sh installs it)');
    }
  } else {
    console.log(`e2e: generation steps skipped: no tiny model at ${tinyModel} (set SELFDIFFUSION_FIXTURES)`);
  }

  await step('delete the projects', async () => {
    const count = await wd.exec('return document.querySelectorAll("#project-list .project").length');
    for (let left = count - 1; left >= 0; left -= 1) {
      await wd.click('#delete-project');
      await wd.click('#confirm-ok');
      await wd.until(() => wd.exec('return document.querySelectorAll("#project-list .project").length === arguments[0]', left), `${left} project(s) left`);
    }
    await wd.waitFor('#no-project');
    const left = existsSync(join(library, 'images')) ? readdirSync(join(library, 'images')) : [];
    assert.deepEqual(left, [], 'project files removed');
    await settle();
    writeFileSync(join(shots, 'empty.png'), await wd.screenshot());
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
