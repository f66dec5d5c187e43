#!/usr/bin/env node
// A protected upstream for tollgate's tests. It validates Bearer tokens for real:
// JWT access tokens against the IdP's JWKS (signature, issuer, exp), opaque ones
// through the IdP's introspection endpoint. Every request is echoed and recorded.
//
//   node upstream.mjs --port P --issuer URL [--tls-cert F --tls-key F]
//                     [--audience AUD] [--jwks-url URL] [--introspection-url URL]
//                     [--client-id ID --client-secret S] [--introspection-cache SECONDS]
//                     [--max-records N] [--verbose] [--exit-on-stdin-close]
//
// Listens on 127.0.0.1 only. Prints {"ready":true,"port":P} on stdout when ready.
// Test-only endpoints live under /_test/ (see README.md).

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import { parseArgs } from 'node:util';

import { createRemoteJWKSet, decodeJwt, errors as joseErrors, jwtVerify } from 'jose';

const HOST = '127.0.0.1';
const REALM = 'tollgate-test-upstream';

const { values: args } = parseArgs({
  options: {
    port: { type: 'string', default: '0' },
    issuer: { type: 'string' },
    'tls-cert': { type: 'string' },
    'tls-key': { type: 'string' },
    audience: { type: 'string' },
    'jwks-url': { type: 'string' },
    'introspection-url': { type: 'string' },
    'client-id': { type: 'string', default: 'upstream-client' },
    'client-secret': { type: 'string', default: 'upstream-secret' },
    'max-records': { type: 'string', default: '10000' },
    'introspection-cache': { type: 'string', default: '0' },
    verbose: { type: 'boolean', default: false },
    'exit-on-stdin-close': { type: 'boolean', default: false },
  },
  strict: true,
});

function die(msg) {
  process.stderr.write(`upstream: ${msg}\n`);
  process.exit(2);
}

if (!args.issuer || !URL.canParse(args.issuer)) die('--issuer URL is required');
const issuer = args.issuer.replace(/\/+$/, '');
const port = Number(args.port);
if (!Number.isInteger(port) || port < 0 || port > 65535) die(`bad --port ${args.port}`);
if (!!args['tls-cert'] !== !!args['tls-key']) die('--tls-cert and --tls-key go together');
const maxRecords = Number(args['max-records']);
if (!Number.isInteger(maxRecords) || maxRecords < 1) die('bad --max-records');
const introspectionCacheS = Number(args['introspection-cache']);
if (!Number.isFinite(introspectionCacheS) || introspectionCacheS < 0) die('bad --introspection-cache');
const jwksUrl = new URL(args['jwks-url'] ?? `${issuer}/jwks`);
const introspectionUrl = args['introspection-url'] ?? `${issuer}/token/introspection`;

// jose caches the key set (10 min) and refetches when a token names an unknown kid,
// at most once a second here (so a restarted IdP's new key is picked up quickly).
const JWKS = createRemoteJWKSet(jwksUrl, { cooldownDuration: 1000, timeoutDuration: 5000 });

// ---------------------------------------------------------------- state
const initial = () => ({
  records: [],
  seq: 0,
  revokedBeforeMs: 0, // tokens issued before this instant are rejected
  revokedIds: new Set(), // jti (JWT) or sha256 of the token (opaque)
  seenIds: new Set(), // every token id seen so far (a revoke covers them all)
  always401: { on: false, count: -1 },
  insufficientScope: { on: false, count: -1, status: 401 },
  fail: null, // { status, count, headers, body }
  delayMs: 0,
  introspectionCache: new Map(), // token -> { claims, until }
});
let state = initial();

// ---------------------------------------------------------------- helpers
const sleep = (ms) => new Promise((r) => { setTimeout(r, ms); });
const sha256 = (s) => crypto.createHash('sha256').update(s).digest('hex');
const nowS = () => Date.now() / 1000;

function send(res, status, body, headers = {}) {
  const text = typeof body === 'string';
  const data = Buffer.from(text ? body : JSON.stringify(body));
  res.writeHead(status, {
    'content-type': text ? 'text/plain; charset=utf-8' : 'application/json',
    'content-length': data.length,
    'cache-control': 'no-store',
    ...headers,
  });
  res.end(data);
}

async function readJson(req) {
  const chunks = [];
  for await (const c of req) chunks.push(c);
  const raw = Buffer.concat(chunks).toString('utf8');
  return raw ? JSON.parse(raw) : {};
}

class TokenError extends Error {}

function bearerChallenge(error, description) {
  const parts = [`realm="${REALM}"`];
  if (error) parts.push(`error="${error}"`);
  if (description) parts.push(`error_description="${description.replace(/["\\]/g, '')}"`);
  return `Bearer ${parts.join(', ')}`;
}

// Consume one use of a counted switch; returns whether it applies to this request.
function takeSwitch(sw) {
  if (!sw.on || sw.count === 0) return false;
  if (sw.count > 0) {
    sw.count -= 1;
    if (sw.count === 0) sw.on = false;
  }
  return true;
}

async function introspect(token) {
  const cached = state.introspectionCache.get(token);
  if (cached && cached.until > Date.now()) return cached.claims;
  const basic = Buffer.from(`${encodeURIComponent(args['client-id'])}:${encodeURIComponent(args['client-secret'])}`).toString('base64');
  let resp;
  try {
    resp = await fetch(introspectionUrl, {
      method: 'POST',
      headers: { authorization: `Basic ${basic}`, 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
      body: new URLSearchParams({ token, token_type_hint: 'access_token' }),
      signal: AbortSignal.timeout(5000),
    });
  } catch (err) {
    throw new TokenError(`introspection failed: ${err.message}`);
  }
  if (resp.status !== 200) throw new TokenError(`introspection answered ${resp.status}`);
  const body = await resp.json();
  if (!body.active) throw new TokenError('token is not active');
  const claims = { ...body, jti: body.jti ?? token };
  if (claims.iss !== undefined && claims.iss !== issuer) throw new TokenError('unexpected issuer');
  if (introspectionCacheS > 0 && claims.exp !== undefined) {
    state.introspectionCache.set(token, { claims, until: Math.min(claims.exp * 1000, Date.now() + introspectionCacheS * 1000) });
  }
  return claims;
}

async function validate(token) {
  let claims;
  let format;
  if (/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/.test(token)) {
    format = 'jwt';
    try {
      ({ payload: claims } = await jwtVerify(token, JWKS, {
        issuer,
        audience: args.audience,
        algorithms: ['RS256', 'PS256', 'ES256', 'EdDSA'],
        requiredClaims: ['exp'],
      }));
    } catch (err) {
      if (err instanceof joseErrors.JWTExpired) throw new TokenError('token expired');
      throw new TokenError(`invalid token: ${err.code ?? err.name}`);
    }
  } else {
    format = 'opaque';
    claims = await introspect(token);
  }
  if (typeof claims.exp !== 'number') throw new TokenError('token has no exp');
  if (claims.exp <= nowS()) throw new TokenError('token expired');
  if (args.audience !== undefined && format === 'opaque') {
    const aud = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
    if (!aud.includes(args.audience)) throw new TokenError('unexpected audience');
  }
  const id = format === 'jwt' && claims.jti ? claims.jti : sha256(token);
  const issuedMs = typeof claims.iat_ms === 'number' ? claims.iat_ms : undefined;
  const revoked = state.revokedIds.has(id)
    || (state.revokedBeforeMs > 0 && (issuedMs !== undefined
      ? issuedMs < state.revokedBeforeMs
      : typeof claims.iat !== 'number' || claims.iat < Math.floor(state.revokedBeforeMs / 1000)));
  if (revoked) throw new TokenError('token revoked');
  state.seenIds.add(id);
  return {
    format,
    sub: claims.sub ?? claims.client_id,
    client_id: claims.client_id,
    scope: claims.scope,
    aud: claims.aud,
    iss: claims.iss,
    iat: claims.iat,
    exp: claims.exp,
    jti: claims.jti,
    iat_ms: claims.iat_ms,
  };
}

// ---------------------------------------------------------------- test endpoints
async function testEndpoint(req, res, url) {
  const route = `${req.method} ${url.pathname}`;
  switch (route) {
    case 'GET /_test/requests': {
      const since = Number(url.searchParams.get('since') ?? 0);
      const requests = since ? state.records.filter((r) => r.seq > since) : state.records;
      send(res, 200, { count: state.seq, requests });
      return;
    }
    case 'POST /_test/reset':
      await readJson(req).catch(() => ({}));
      state = initial();
      send(res, 200, { ok: true });
      return;
    case 'POST /_test/revoke': {
      const b = await readJson(req);
      if (b.jti) state.revokedIds.add(b.jti);
      if (b.token) state.revokedIds.add(decodeJwtSafe(b.token)?.jti ?? sha256(b.token));
      if (!b.jti && !b.token) {
        state.revokedBeforeMs = Date.now();
        for (const id of state.seenIds) state.revokedIds.add(id);
        state.introspectionCache.clear();
      }
      send(res, 200, { ok: true, revoked_before_ms: state.revokedBeforeMs, revoked_ids: state.revokedIds.size });
      return;
    }
    case 'POST /_test/always401': {
      const b = await readJson(req);
      state.always401 = { on: !!b.on, count: b.count === undefined ? -1 : Number(b.count) };
      send(res, 200, { ok: true, always401: state.always401 });
      return;
    }
    case 'POST /_test/insufficient_scope': {
      const b = await readJson(req);
      state.insufficientScope = { on: !!b.on, count: b.count === undefined ? -1 : Number(b.count), status: b.status ?? 401 };
      send(res, 200, { ok: true, insufficient_scope: state.insufficientScope });
      return;
    }
    case 'POST /_test/fail': {
      const b = await readJson(req);
      if (b.status === undefined || b.status === null) {
        state.fail = null;
      } else {
        if (!Number.isInteger(b.status) || b.status < 200 || b.status > 599) throw new Error('status must be an HTTP status');
        state.fail = { on: true, status: b.status, count: b.count === undefined ? 1 : Number(b.count), headers: b.headers ?? {}, body: b.body };
      }
      send(res, 200, { ok: true, fail: state.fail });
      return;
    }
    case 'POST /_test/delay': {
      const b = await readJson(req);
      const d = Number(b.delay_ms ?? 0);
      if (!Number.isFinite(d) || d < 0) throw new Error('delay_ms must be >= 0');
      state.delayMs = d;
      send(res, 200, { ok: true, delay_ms: d });
      return;
    }
    default:
      send(res, 404, { error: 'not_found', error_description: `no test endpoint ${route}` });
  }
}

function decodeJwtSafe(token) {
  try {
    return decodeJwt(token);
  } catch {
    return null;
  }
}

// ---------------------------------------------------------------- requests
async function handle(req, res) {
  const url = new URL(req.url, 'http://upstream.invalid');
  if (url.pathname.startsWith('/_test/')) {
    try {
      await testEndpoint(req, res, url);
    } catch (err) {
      send(res, 400, { error: 'bad_request', error_description: err.message });
    }
    return;
  }

  const receivedAt = Date.now();
  const hash = crypto.createHash('sha256');
  let bodyLength = 0;
  for await (const chunk of req) {
    hash.update(chunk);
    bodyLength += chunk.length;
  }
  const rawHeaders = [];
  for (let i = 0; i < req.rawHeaders.length; i += 2) rawHeaders.push([req.rawHeaders[i], req.rawHeaders[i + 1]]);

  state.seq += 1;
  const record = {
    seq: state.seq,
    received_at: new Date(receivedAt).toISOString(),
    received_at_ms: receivedAt,
    method: req.method,
    url: req.url,
    path: url.pathname,
    query: url.search.replace(/^\?/, ''),
    http_version: req.httpVersion,
    tls: !!req.socket.encrypted,
    headers: req.headers,
    raw_headers: rawHeaders,
    body_length: bodyLength,
    body_sha256: hash.digest('hex'),
  };
  state.records.push(record);
  if (state.records.length > maxRecords) state.records.splice(0, state.records.length - maxRecords);

  const finish = (status, body, headers = {}) => {
    record.status = status;
    if (headers['www-authenticate']) record.www_authenticate = headers['www-authenticate'];
    if (args.verbose) process.stderr.write(`upstream: #${record.seq} ${req.method} ${req.url} -> ${status}${record.token_error ? ` (${record.token_error})` : ''}\n`);
    send(res, status, body, headers);
  };

  if (state.delayMs > 0) await sleep(state.delayMs);

  if (state.fail && takeSwitch(state.fail)) {
    const f = state.fail;
    if (!f.on) state.fail = null;
    record.injected = 'fail';
    finish(f.status, f.body ?? { error: 'injected', status: f.status }, f.headers);
    return;
  }

  if (takeSwitch(state.always401)) {
    record.injected = 'always401';
    record.token_error = 'always401 is on';
    finish(401, { error: 'invalid_token', error_description: 'always401 is on' }, {
      'www-authenticate': bearerChallenge('invalid_token', 'always401 is on'),
    });
    return;
  }

  const authz = req.headers.authorization;
  const m = authz ? /^Bearer[ ]+(\S+)\s*$/i.exec(authz) : null;
  record.bearer_present = !!m;
  if (!m) {
    record.token_error = authz ? 'authorization is not a Bearer token' : 'no authorization';
    finish(401, { error: 'invalid_request', error_description: record.token_error }, {
      'www-authenticate': authz ? bearerChallenge('invalid_request', record.token_error) : bearerChallenge(),
    });
    return;
  }

  let token;
  try {
    token = await validate(m[1]);
  } catch (err) {
    if (!(err instanceof TokenError)) throw err;
    record.token_error = err.message;
    finish(401, { error: 'invalid_token', error_description: err.message }, {
      'www-authenticate': bearerChallenge('invalid_token', err.message),
    });
    return;
  }
  record.token = token;

  if (takeSwitch(state.insufficientScope)) {
    record.injected = 'insufficient_scope';
    record.token_error = 'insufficient_scope is on';
    finish(state.insufficientScope.status, { error: 'insufficient_scope', error_description: 'insufficient_scope is on' }, {
      'www-authenticate': bearerChallenge('insufficient_scope', 'insufficient_scope is on'),
    });
    return;
  }

  finish(200, {
    method: record.method,
    url: record.url,
    path: record.path,
    query: record.query,
    query_params: Object.fromEntries([...new Set(url.searchParams.keys())].map((k) => [k, url.searchParams.getAll(k)])),
    http_version: record.http_version,
    tls: record.tls,
    headers: record.headers,
    raw_headers: record.raw_headers,
    body_length: record.body_length,
    body_sha256: record.body_sha256,
    token,
    expires_in_seconds: Math.round((token.exp - nowS()) * 1000) / 1000,
    seq: record.seq,
  });
}

const onRequest = (req, res) => {
  handle(req, res).catch((err) => {
    process.stderr.write(`upstream: error: ${err?.stack || err}\n`);
    if (!res.headersSent) send(res, 500, { error: 'server_error', error_description: String(err?.message ?? err) });
    else res.destroy();
  });
};

const server = args['tls-cert']
  ? https.createServer({ cert: fs.readFileSync(args['tls-cert']), key: fs.readFileSync(args['tls-key']) }, onRequest)
  : http.createServer(onRequest);
server.on('error', (err) => die(`listen failed: ${err.message}`));
server.listen(port, HOST, () => {
  process.stdout.write(`${JSON.stringify({ ready: true, port: server.address().port })}\n`);
});

function shutdown() {
  server.close();
  server.closeAllConnections?.();
  process.exit(0);
}
process.on('SIGINT', shutdown);
process.on('SIGTERM', shutdown);
// For parents that may die without killing us (a Rust test that panics: dropping a
// std::process::Child does not kill it): spawn with a piped stdin and pass this flag;
// when the parent goes away the pipe closes and we exit.
if (args['exit-on-stdin-close']) {
  process.stdin.on('end', shutdown);
  process.stdin.on('close', shutdown);
  process.stdin.on('error', shutdown);
  process.stdin.resume();
}
