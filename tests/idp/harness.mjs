// Helpers to start idp.mjs / upstream.mjs from node tests and to talk to them.
// Every process started here is killed by stopAll() (call it from after()).

import { execFileSync, spawn } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

import {
  SignJWT, calculateJwkThumbprint, exportJWK, generateKeyPair, importPKCS8,
} from 'jose';

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

// ---------------------------------------------------------------- TLS, mutual TLS, DPoP

// A test PKI made with the openssl CLI in `dir` (nothing committed):
//   ca.pem/ca.key            the test CA
//   server.pem/server.key    127.0.0.1 (IP SAN) and localhost, signed by the CA
//   client.pem/client.key    O=tollgate-tests, CN=mtls-client, signed by the CA (tls_client_auth)
//   self-signed.pem/.key     CN=self-signed-client, self-signed (self_signed_tls_client_auth)
//   other.pem/other.key      CN=mtls-client from another CA (the wrong certificate)
// Returns the paths (and the PEM texts of ca/server).
export function makePki(dir) {
  const f = (name) => path.join(dir, name);
  const ossl = (...a) => execFileSync('openssl', a, { stdio: ['ignore', 'ignore', 'pipe'] });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  const ca = (name, subj) => ossl('req', '-x509', ...ec, '-keyout', f(`${name}.key`), '-out', f(`${name}.pem`), '-days', '2', '-subj', subj,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign');
  const leaf = (name, subj, caName, ext) => {
    ossl('req', ...ec, '-keyout', f(`${name}.key`), '-out', f(`${name}.csr`), '-subj', subj);
    fs.writeFileSync(f(`${name}.ext`), ext);
    ossl('x509', '-req', '-in', f(`${name}.csr`), '-CA', f(`${caName}.pem`), '-CAkey', f(`${caName}.key`), '-CAcreateserial',
      '-out', f(`${name}.pem`), '-days', '2', '-extfile', f(`${name}.ext`));
  };
  ca('ca', '/CN=tollgate node self-check CA');
  ca('other-ca', '/CN=some other CA');
  leaf('server', '/CN=127.0.0.1', 'ca', 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n');
  leaf('client', '/O=tollgate-tests/CN=mtls-client', 'ca', 'extendedKeyUsage=clientAuth\n');
  leaf('other', '/O=tollgate-tests/CN=mtls-client', 'other-ca', 'extendedKeyUsage=clientAuth\n');
  ossl('req', '-x509', ...ec, '-keyout', f('self-signed.key'), '-out', f('self-signed.pem'), '-days', '2', '-subj', '/CN=self-signed-client');
  const out = {};
  for (const n of ['ca', 'server', 'client', 'self-signed', 'other']) out[n] = { cert: f(`${n}.pem`), key: f(`${n}.key`) };
  out.caPem = fs.readFileSync(f('ca.pem'));
  return out;
}

// base64url(SHA-256(DER)) of a PEM certificate: its x5t#S256.
export function certThumbprint(pemFile) {
  return crypto.createHash('sha256').update(new crypto.X509Certificate(fs.readFileSync(pemFile)).raw).digest('base64url');
}

// One HTTP(S) request with node:http(s) (fetch cannot take a CA or a client certificate).
//   tls: { ca, cert, key } (PEM contents or file paths)
// Resolves { status, headers: Headers, body (JSON when it parses, else text) }.
export function request(url, { method = 'GET', headers = {}, body, tls = {} } = {}) {
  const u = new URL(url);
  const read = (v) => (typeof v === 'string' && !v.includes('-----BEGIN') ? fs.readFileSync(v) : v);
  const mod = u.protocol === 'https:' ? https : http;
  const opts = { method, headers: { ...headers }, agent: false };
  if (u.protocol === 'https:') {
    if (tls.ca) opts.ca = read(tls.ca);
    if (tls.cert) opts.cert = read(tls.cert);
    if (tls.key) opts.key = read(tls.key);
  }
  let data = body;
  if (data instanceof URLSearchParams) {
    data = data.toString();
    opts.headers['content-type'] ??= 'application/x-www-form-urlencoded';
  } else if (data !== undefined && typeof data === 'object' && !Buffer.isBuffer(data)) {
    data = JSON.stringify(data);
    opts.headers['content-type'] ??= 'application/json';
  }
  return new Promise((resolve, reject) => {
    const req = mod.request(u, opts, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let parsed;
        try { parsed = JSON.parse(text); } catch { parsed = text; }
        const h = new Headers();
        for (const [k, v] of Object.entries(res.headers)) for (const x of [v].flat()) h.append(k, String(x));
        resolve({ status: res.statusCode, headers: h, body: parsed });
      });
    });
    req.on('error', reject);
    req.end(data);
  });
}

// A DPoP key pair (ES256 by default): { privateKey, publicKey, jwk (public), jkt }.
export async function dpopKey(alg = 'ES256') {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const jwk = await exportJWK(publicKey);
  return { alg, privateKey, publicKey, jwk, jkt: await calculateJwkThumbprint(jwk) };
}

// A DPoP proof JWT (RFC 9449 §4.2). `accessToken` adds ath; `nonce` adds nonce. The
// overrides make bad proofs: header {typ, alg, jwk}, claims {iat, jti, htm, htu, ath}.
export async function dpopProof(key, { htm, htu, accessToken, nonce, header = {}, claims = {}, signWith } = {}) {
  const payload = { htm, htu, jti: crypto.randomUUID(), iat: Math.floor(Date.now() / 1000) };
  if (accessToken !== undefined) payload.ath = crypto.createHash('sha256').update(accessToken).digest('base64url');
  if (nonce !== undefined) payload.nonce = nonce;
  Object.assign(payload, claims);
  return new SignJWT(payload)
    .setProtectedHeader({ alg: key.alg, typ: 'dpop+jwt', jwk: key.jwk, ...header })
    .sign((signWith ?? key).privateKey);
}
