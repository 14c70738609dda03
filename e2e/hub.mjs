// A loopback server with the Hugging Face Hub's URL layout, serving tiny fixture models as
// catalog repos (tiny-sd15 as `sd-1.5`, tiny-sdxl as `sdxl-turbo`): `/<repo>/resolve/<rev>/<file>`,
// LFS files redirected to `/blobs/<sha256>` with X-Linked-Etag / X-Linked-Size, ETag,
// X-Repo-Commit and Range.
import { createServer } from 'node:http';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

/** The repos of the catalog entries the hub serves, by the fixture folder each is made from. */
export const REPOS = { sd15: 'stable-diffusion-v1-5/stable-diffusion-v1-5', sdxl: 'stabilityai/sdxl-turbo' };
const COMMIT = '0123456789abcdef0123456789abcdef01234567';

/**
 * The catalog's file names mapped to the fixture's files (weights under their fp16 names);
 * `xl` adds the second tokenizer and text encoder.
 */
function files(model, xl) {
  const read = (p) => readFileSync(join(model, p));
  const second = xl ? {
    'text_encoder_2/config.json': read('text_encoder_2/config.json'),
    'text_encoder_2/model.fp16.safetensors': read('text_encoder_2/model.safetensors'),
    'tokenizer_2/merges.txt': read('tokenizer_2/merges.txt'),
    'tokenizer_2/special_tokens_map.json': read('tokenizer_2/special_tokens_map.json'),
    'tokenizer_2/tokenizer_config.json': read('tokenizer_2/tokenizer_config.json'),
    'tokenizer_2/vocab.json': read('tokenizer_2/vocab.json'),
  } : {};
  return {
    ...second,
    'model_index.json': read('model_index.json'),
    'scheduler/scheduler_config.json': read('scheduler/scheduler_config.json'),
    'text_encoder/config.json': read('text_encoder/config.json'),
    'text_encoder/model.fp16.safetensors': read('text_encoder/model.safetensors'),
    'tokenizer/merges.txt': read('tokenizer/merges.txt'),
    'tokenizer/special_tokens_map.json': Buffer.from('{}'),
    'tokenizer/tokenizer_config.json': read('tokenizer/tokenizer_config.json'),
    'tokenizer/vocab.json': read('tokenizer/vocab.json'),
    'unet/config.json': read('unet/config.json'),
    'unet/diffusion_pytorch_model.fp16.safetensors': read('unet/diffusion_pytorch_model.safetensors'),
    'vae/config.json': read('vae/config.json'),
    'vae/diffusion_pytorch_model.fp16.safetensors': read('vae/diffusion_pytorch_model.safetensors'),
  };
}

/**
 * Starts the hub for the fixture folders `sd15` (served as SD 1.5) and, when given, `sdxl`
 * (served as SDXL-Turbo). `cutOnce` names an SD 1.5 file whose first full download is cut
 * halfway. Resolves to { url, requests, close }.
 */
export function startHub({ sd15, sdxl }, cutOnce) {
  const repos = new Map([[REPOS.sd15, files(sd15, false)]]);
  if (sdxl) repos.set(REPOS.sdxl, files(sdxl, true));
  const sha = (b) => createHash('sha256').update(b).digest('hex');
  const blobs = new Map([...repos.values()].flatMap((f) => Object.values(f)).map((b) => [sha(b), b]));
  const requests = [];
  let cut = cutOnce ? sha(repos.get(REPOS.sd15)[cutOnce]) : null;
  const server = createServer((req, res) => {
    requests.push({ method: req.method, url: req.url, range: req.headers.range || null });
    const repo = [...repos.keys()].find((r) => req.url.startsWith(`/${r}/resolve/main/`));
    if (repo) {
      const name = decodeURIComponent(req.url.slice(`/${repo}/resolve/main/`.length));
      const body = repos.get(repo)[name];
      if (!body) { res.writeHead(404).end(); return; }
      const hash = sha(body);
      if (name.endsWith('.safetensors')) {
        res.writeHead(302, {
          Location: `/blobs/${hash}`, 'X-Linked-Etag': `"${hash}"`, 'X-Linked-Size': String(body.length), 'X-Repo-Commit': COMMIT,
        }).end();
        return;
      }
      res.writeHead(200, { ETag: `"${hash.slice(0, 40)}"`, 'Content-Length': body.length, 'X-Repo-Commit': COMMIT });
      res.end(req.method === 'HEAD' ? undefined : body);
      return;
    }
    const blob = req.url.startsWith('/blobs/') && blobs.get(req.url.slice('/blobs/'.length));
    if (!blob) { res.writeHead(404).end(); return; }
    const start = /^bytes=(\d+)-$/.exec(req.headers.range || '')?.[1];
    if (start !== undefined) {
      const s = Number(start);
      res.writeHead(206, { 'Content-Length': blob.length - s, 'Content-Range': `bytes ${s}-${blob.length - 1}/${blob.length}` });
      res.end(blob.subarray(s));
    } else if (cut && req.url === `/blobs/${cut}`) {
      cut = null;
      res.writeHead(200, { 'Content-Length': blob.length });
      res.write(blob.subarray(0, Math.floor(blob.length / 2)), () => res.destroy());
    } else {
      res.writeHead(200, { 'Content-Length': blob.length }).end(blob);
    }
  });
  return new Promise((resolveStart) => {
    server.listen(0, '127.0.0.1', () => {
      resolveStart({
        url: `http://127.0.0.1:${server.address().port}`,
        requests,
        close: () => new Promise((r) => server.close(r)),
      });
    });
  });
}
