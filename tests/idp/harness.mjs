// Helpers to start idp.mjs / upstream.mjs from node tests and to talk to them.
// Every process started here is killed by stopAll() (call it from after()).

import { spawn } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

import { SignJWT, importPKCS8 } from 'jose';

export const DIR = path.dirname(fileURLToPath(import.meta.url));
const children = new Set();

// Start `node <script> ...args`; resolve with { child, ready, stdoutLines, stderr }
// once the ready line arrives on stdout.
export function startScript(script, args, { timeoutMs = 30_000 } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(DIR, script), ...args], {
      cwd: DIR,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.add(child);
    const info = { child, ready: null, stdoutLines: [], stderr: '' };
    let buf = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${script} not ready after ${timeoutMs} ms; stdout: ${JSON.stringify(info.stdoutLines)} ${JSON.stringify(buf)}; stderr: ${info.stderr}`));
    }, timeoutMs);
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (d) => {
      buf += d;
      let i;
      while ((i = buf.indexOf('\n')) !== -1) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        info.stdoutLines.push(line);
        if (!info.ready) {
          try {
            info.ready = JSON.parse(line);
          } catch (err) {
            clearTimeout(timer);
            reject(new Error(`${script}: first stdout line is not JSON: ${line}`));
            return;
          }
          clearTimeout(timer);
          resolve(info);
        }
      }
    });
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (d) => { info.stderr += d; });
    child.on('exit', (code, signal) => {
      children.delete(child);
      if (!info.ready) {
        clearTimeout(timer);
        reject(new Error(`${script} exited (${code ?? signal}) before ready; stderr: ${info.stderr}`));
      }
    });
  });
}

export async function startIdp(args = []) {
  const info = await startScript('idp.mjs', ['--port', '0', ...args]);
  const { port, issuer, token_url: tokenUrl } = info.ready;
  return { ...info, port, issuer, token_url: tokenUrl, base: issuer };
}

export async function startUpstream(issuer, args = []) {
  const info = await startScript('upstream.mjs', ['--port', '0', '--issuer', issuer, ...args]);
  const { port } = info.ready;
  const scheme = args.includes('--tls-cert') ? 'https' : 'http';
  return { ...info, port, base: `${scheme}://127.0.0.1:${port}` };
}

export async function stop(proc) {
  const { child } = proc;
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => { child.once('exit', r); });
  child.kill('SIGTERM');
  const t = setTimeout(() => child.kill('SIGKILL'), 3000);
  await exited;
  clearTimeout(t);
}

export async function stopAll() {
  await Promise.all([...children].map((child) => stop({ child })));
}

export const sleep = (ms) => new Promise((r) => { setTimeout(r, ms); });

export async function postJson(url, body) {
  const r = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body ?? {}) });
  return { status: r.status, body: await r.json() };
}

export async function getJson(url, init) {
  const r = await fetch(url, init);
  const text = await r.text();
  let body;
  try { body = JSON.parse(text); } catch { body = text; }
  return { status: r.status, headers: r.headers, body };
}

// Build the token request for a client using the given method.
//   method: 'client_secret_basic' | 'client_secret_post' | 'private_key_jwt'
export async function tokenRequest(tokenUrl, { clientId, secret, method, keyFile, alg, params = {}, aud }) {
  const form = new URLSearchParams({ grant_type: 'client_credentials', ...params });
  const headers = { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' };
  if (method === 'client_secret_basic') {
    const cred = `${encodeURIComponent(clientId)}:${encodeURIComponent(secret)}`;
    headers.authorization = `Basic ${Buffer.from(cred).toString('base64')}`;
  } else if (method === 'client_secret_post') {
    form.set('client_id', clientId);
    form.set('client_secret', secret);
  } else if (method === 'private_key_jwt') {
    form.set('client_assertion_type', 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer');
    form.set('client_assertion', await clientAssertion({ clientId, keyFile, alg, aud: aud ?? tokenUrl }));
  } else {
    throw new Error(`unknown method ${method}`);
  }
  const r = await fetch(tokenUrl, { method: 'POST', headers, body: form });
  const text = await r.text();
  let body;
  try { body = JSON.parse(text); } catch { body = text; }
  return { status: r.status, headers: r.headers, body };
}

export async function clientAssertion({ clientId, keyFile, alg, aud, jti = crypto.randomUUID() }) {
  const key = await importPKCS8(fs.readFileSync(path.join(DIR, 'fixtures', keyFile), 'utf8'), alg);
  return new SignJWT({})
    .setProtectedHeader({ alg, typ: 'JWT' })
    .setIssuer(clientId)
    .setSubject(clientId)
    .setAudience(aud)
    .setJti(jti)
    .setIssuedAt()
    .setExpirationTime('60s')
    .sign(key);
}

export function decodeJwtPayload(token) {
  return JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString('utf8'));
}

export async function callUpstream(base, token, { path: p = '/api/thing', method = 'GET', body, headers = {} } = {}) {
  const h = { ...headers };
  if (token !== undefined) h.authorization = `Bearer ${token}`;
  return getJson(`${base}${p}`, { method, headers: h, body });
}
