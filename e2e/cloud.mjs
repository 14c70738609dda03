// The cloud for the E2E run, all on loopback: the Cognito emulator (moto) with a user pool and
// an app client made through its API, and the real selfdiffusion-server on the tiny model.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { createServer } from 'node:net';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';

/** A loopback port nobody listens on right now. */
export function freePort() {
  return new Promise((res) => {
    const srv = createServer();
    srv.listen(0, '127.0.0.1', () => { const { port } = srv.address(); srv.close(() => res(port)); });
  });
}

async function waitFor(url, what) {
  for (let i = 0; i < 150; i += 1) {
    try { if ((await fetch(url)).status < 500) return; } catch { /* not yet */ }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`${what} did not start at ${url}`);
}

/** The moto_server binary scripts/test.sh installs, or null. */
export function motoBinary() {
  const candidates = [process.env.MOTO_SERVER, join(homedir(), '.cache/selfdiffusion-moto/bin/moto_server')];
  return candidates.find((p) => p && existsSync(p)) || null;
}

async function cognito(url, op, body) {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'Content-Type': 'application/x-amz-json-1.1', 'X-Amz-Target': `AWSCognitoIdentityProviderService.${op}` },
    body: JSON.stringify(body),
  });
  if (!res.ok) throw new Error(`${op}: ${res.status} ${await res.text()}`);
  return res.json();
}

/**
 * Starts moto and the server (next to the app binary) for `model`; returns the app's
 * environment for this cloud and `close()`.
 */
export async function startCloud({ moto, appBinary, model, work }) {
  const children = [];
  const close = () => { for (const c of children) c.kill('SIGTERM'); };
  try {
    const motoPort = await freePort();
    const motoUrl = `http://127.0.0.1:${motoPort}`;
    children.push(spawn(moto, ['-H', '127.0.0.1', '-p', String(motoPort)], { stdio: 'ignore' }));
    await waitFor(`${motoUrl}/moto-api/`, 'moto_server');
    const { UserPool } = await cognito(motoUrl, 'CreateUserPool', {
      PoolName: 'e2e',
      Policies: { PasswordPolicy: { MinimumLength: 8, RequireUppercase: true, RequireLowercase: true, RequireNumbers: true, RequireSymbols: false } },
    });
    const { UserPoolClient } = await cognito(motoUrl, 'CreateUserPoolClient', {
      UserPoolId: UserPool.Id,
      ClientName: 'desktop',
      GenerateSecret: false,
      ExplicitAuthFlows: ['ALLOW_USER_PASSWORD_AUTH', 'ALLOW_REFRESH_TOKEN_AUTH'],
    });
    const serverPort = await freePort();
    const serverUrl = `http://127.0.0.1:${serverPort}`;
    const data = join(work, 'server');
    mkdirSync(data, { recursive: true });
    const server = spawn(join(dirname(appBinary), 'selfdiffusion-server'), [], {
      stdio: ['ignore', 'inherit', 'inherit'],
      env: {
        ...process.env,
        RUST_LOG: 'warn',
        SELFDIFFUSION_SERVER_LISTEN: `127.0.0.1:${serverPort}`,
        SELFDIFFUSION_SERVER_DATA_DIR: data,
        SELFDIFFUSION_SERVER_MODEL: model,
        SELFDIFFUSION_SERVER_MODEL_NAME: 'tiny-sd15',
        SELFDIFFUSION_SERVER_DEVICE: 'cpu',
        SELFDIFFUSION_SERVER_ISSUER: `https://cognito-idp.us-east-1.amazonaws.com/${UserPool.Id}`,
        SELFDIFFUSION_SERVER_JWKS_URL: `${motoUrl}/${UserPool.Id}/.well-known/jwks.json`,
        SELFDIFFUSION_SERVER_CLIENT_IDS: UserPoolClient.ClientId,
      },
    });
    children.push(server);
    await waitFor(`${serverUrl}/health`, 'selfdiffusion-server');
    return {
      serverUrl,
      close,
      stopServer: () => server.kill('SIGTERM'),
      env: {
        SELFDIFFUSION_CLOUD_URL: serverUrl,
        SELFDIFFUSION_COGNITO_REGION: 'us-east-1',
        SELFDIFFUSION_COGNITO_USER_POOL_ID: UserPool.Id,
        SELFDIFFUSION_COGNITO_CLIENT_ID: UserPoolClient.ClientId,
        SELFDIFFUSION_COGNITO_ENDPOINT: motoUrl,
      },
    };
  } catch (e) {
    close();
    throw e;
  }
}
