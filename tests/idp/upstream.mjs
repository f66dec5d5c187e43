#!/usr/bin/env node
// A protected upstream for tollgate's tests. It validates Bearer tokens for real:
// JWT access tokens against the IdP's JWKS (signature, issuer, exp), opaque ones
// through the IdP's introspection endpoint. Every request is echoed and recorded.
// Sender-constrained tokens are checked as a resource server must: a token with
// cnf.x5t#S256 only with that TLS client certificate (RFC 8705 §3), a token with cnf.jkt
// only with `Authorization: DPoP` and a valid proof of that key (RFC 9449 §4.3, §7),
// optionally with a server nonce (§9).
//
//   node upstream.mjs --port P --issuer URL [--tls-cert F --tls-key F [--tls-ca F]]
//                     [--audience AUD] [--jwks-url URL] [--introspection-url URL]
//                     [--client-id ID --client-secret S] [--introspection-cache SECONDS]
//                     [--idp-ca F] [--require-cnf] [--dpop-nonce [--dpop-nonce-always-new]]
//                     [--dpop-iat-window SECONDS]
//                     [--max-records N] [--verbose] [--exit-on-stdin-close]
//
// Listens on 127.0.0.1 only. Prints {"ready":true,"port":P} on stdout when ready.
// Test-only endpoints live under /_test/ (see README.md).

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import { parseArgs } from 'node:util';

import {
  EmbeddedJWK, calculateJwkThumbprint, createRemoteJWKSet, customFetch, decodeJwt, decodeProtectedHeader,
  errors as joseErrors, jwtVerify,
} from 'jose';

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
    'tls-ca': { type: 'string' },
    'idp-ca': { type: 'string' },
    'require-cnf': { type: 'boolean', default: false },
    'dpop-nonce': { type: 'boolean', default: false },
    'dpop-nonce-always-new': { type: 'boolean', default: false },
    'dpop-iat-window': { type: 'string', default: '60' },
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
if (args['tls-ca'] && !args['tls-cert']) die('--tls-ca needs --tls-cert/--tls-key');
if (args['dpop-nonce-always-new'] && !args['dpop-nonce']) die('--dpop-nonce-always-new needs --dpop-nonce');
const iatWindowS = Number(args['dpop-iat-window']);
if (!Number.isFinite(iatWindowS) || iatWindowS < 0) die('bad --dpop-iat-window');
const jwksUrl = new URL(args['jwks-url'] ?? `${issuer}/jwks`);
const introspectionUrl = args['introspection-url'] ?? `${issuer}/token/introspection`;

function readFile(file) {
  try {
    return fs.readFileSync(file);
  } catch (err) {
    return die(`${file}: ${err.message}`);
  }
}

// fetch() for the IdP (JWKS, introspection). Node's fetch cannot be given a CA, so with
// --idp-ca (an https IdP whose certificate a test CA signed) requests go through
// node:https with that CA.
const idpCa = args['idp-ca'] ? readFile(args['idp-ca']) : undefined;
function idpFetch(url, init = {}) {
  if (!idpCa) return fetch(url, init);
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const headers = {};
    new Headers(init.headers ?? {}).forEach((v, k) => { headers[k] = v; });
    let body = init.body;
    if (body instanceof URLSearchParams) {
      body = body.toString();
      headers['content-type'] ??= 'application/x-www-form-urlencoded';
    }
    const mod = u.protocol === 'https:' ? https : http;
    const req = mod.request(u, { method: init.method ?? 'GET', headers, ca: idpCa, signal: init.signal }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        const h = [];
        for (const [k, v] of Object.entries(res.headers)) for (const x of [v].flat()) h.push([k, String(x)]);
        resolve(new Response(Buffer.concat(chunks), { status: res.statusCode, headers: h }));
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}

// jose caches the key set (10 min) and refetches when a token names an unknown kid,
// at most once a second here (so a restarted IdP's new key is picked up quickly).
const JWKS = createRemoteJWKSet(jwksUrl, { cooldownDuration: 1000, timeoutDuration: 5000, [customFetch]: idpFetch });

// Algorithms accepted for DPoP proofs: asymmetric only (RFC 9449 §4.3 check 5).
const DPOP_ALGS = ['ES256', 'ES384', 'ES512', 'PS256', 'PS384', 'PS512', 'RS256', 'RS384', 'RS512', 'EdDSA', 'Ed25519'];
const newNonce = () => crypto.randomBytes(16).toString('base64url');

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
  // RFC 8705: refuse tokens that are not certificate-bound (bound ones are always checked).
  requireCnf: args['require-cnf'],
  // RFC 9449 §9: demand this server nonce in DPoP proofs.
  dpopNonce: { on: args['dpop-nonce'], alwaysNew: args['dpop-nonce-always-new'], current: newNonce(), challenges: 0 },
  dpopJtis: new Map(), // jti -> seen at (ms); a jti is accepted once
  dpopCounts: { accepted: 0, rejected: 0 },
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
    resp = await idpFetch(introspectionUrl, {
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
    cnf: claims.cnf,
  };
}

// ---------------------------------------------------------------- sender constraints
class ProofError extends Error {
  constructor(error, description) {
    super(description);
    this.error = error;
  }
}

const b64urlSha256 = (data) => crypto.createHash('sha256').update(data).digest('base64url');

// The TLS client certificate of this connection, as recorded.
function clientCertificate(req) {
  const sock = req.socket;
  if (!sock.encrypted) return { present: false };
  const x509 = sock.getPeerX509Certificate?.();
  if (!x509) return { present: false };
  return {
    present: true,
    x5t_s256: b64urlSha256(x509.raw),
    subject: x509.subject,
    issuer: x509.issuer,
    authorized: sock.authorized === true,
  };
}

// RFC 8705 §3: a certificate-bound token is accepted only over a connection whose client
// certificate has the thumbprint cnf.x5t#S256. Returns an error description, or null.
function checkCnfX5t(token, cert) {
  const want = token.cnf?.['x5t#S256'];
  if (want === undefined) return state.requireCnf ? 'token is not certificate-bound (no cnf.x5t#S256)' : null;
  if (!cert.present) return 'no TLS client certificate for a certificate-bound token';
  if (cert.x5t_s256 !== want) return 'TLS client certificate does not match cnf.x5t#S256';
  return null;
}

// RFC 9449 §4.3 step 9 (htu): compare after syntax- and scheme-based normalisation
// (RFC 3986 §6.2.2, §6.2.3), ignoring query and fragment.
const UNRESERVED = /[A-Za-z0-9\-._~]/;
function normalizeHtu(value) {
  const u = URL.parse(String(value));
  if (!u || !['http:', 'https:'].includes(u.protocol)) return null;
  u.search = '';
  u.hash = '';
  const path = u.pathname.replace(/%([0-9A-Fa-f]{2})/g, (m, hex) => {
    const c = String.fromCharCode(parseInt(hex, 16));
    return UNRESERVED.test(c) ? c : `%${hex.toUpperCase()}`;
  });
  return `${u.protocol}//${u.host}${path || '/'}`;
}

// The URL this request was sent to, as we see it: our scheme, the Host header, the path.
function requestHtu(req) {
  const scheme = req.socket.encrypted ? 'https' : 'http';
  try {
    return normalizeHtu(new URL(req.url, `${scheme}://${req.headers.host ?? `${HOST}:${server.address().port}`}`).href);
  } catch {
    return null;
  }
}

function decodeProof(proof) {
  try {
    const header = decodeProtectedHeader(proof);
    const payload = decodeJwt(proof);
    return { header, payload };
  } catch {
    return null;
  }
}

// Validate the DPoP proof of `req` for `accessToken` (whose claims are `token`): every
// check of RFC 9449 §4.3 and §7.1. Throws ProofError; returns what it verified.
async function validateDpop(req, accessToken, token, record) {
  const values = [];
  for (let i = 0; i < req.rawHeaders.length; i += 2) if (req.rawHeaders[i].toLowerCase() === 'dpop') values.push(req.rawHeaders[i + 1]);
  record.dpop_count = values.length;
  if (values.length === 0) throw new ProofError('invalid_dpop_proof', 'DPoP header missing');
  if (values.length > 1) throw new ProofError('invalid_dpop_proof', 'more than one DPoP header');
  const proof = values[0];
  const decoded = decodeProof(proof);
  if (!decoded) throw new ProofError('invalid_dpop_proof', 'DPoP proof is not a JWT');
  const { header, payload } = decoded;
  record.dpop = {
    typ: header.typ,
    alg: header.alg,
    jwk: header.jwk && typeof header.jwk === 'object'
      ? Object.fromEntries(Object.entries(header.jwk).filter(([k]) => ['kty', 'crv', 'x', 'y', 'n', 'e'].includes(k)))
      : header.jwk,
    jwk_has_private: !!(header.jwk && typeof header.jwk === 'object' && ['d', 'p', 'q', 'dp', 'dq', 'qi', 'k'].some((k) => k in header.jwk)),
    htm: payload.htm,
    htu: payload.htu,
    iat: payload.iat,
    jti: payload.jti,
    ath: payload.ath,
    nonce: payload.nonce,
  };
  if (header.typ !== 'dpop+jwt') throw new ProofError('invalid_dpop_proof', 'DPoP proof typ is not dpop+jwt');
  if (!DPOP_ALGS.includes(header.alg)) throw new ProofError('invalid_dpop_proof', `DPoP proof alg ${header.alg} is not allowed`);
  if (!header.jwk || typeof header.jwk !== 'object') throw new ProofError('invalid_dpop_proof', 'DPoP proof has no jwk');
  if (record.dpop.jwk_has_private) throw new ProofError('invalid_dpop_proof', 'DPoP proof jwk contains a private key');
  try {
    await jwtVerify(proof, EmbeddedJWK, { algorithms: DPOP_ALGS, typ: 'dpop+jwt' });
  } catch (err) {
    throw new ProofError('invalid_dpop_proof', `DPoP proof signature invalid (${err.code ?? err.name})`);
  }
  const jkt = await calculateJwkThumbprint(header.jwk, 'sha256');
  record.dpop.jkt = jkt;
  if (payload.htm !== req.method) throw new ProofError('invalid_dpop_proof', 'DPoP proof htm mismatch');
  const expected = requestHtu(req);
  record.dpop_expected_htu = expected;
  if (typeof payload.htu !== 'string' || normalizeHtu(payload.htu) === null || normalizeHtu(payload.htu) !== expected) {
    throw new ProofError('invalid_dpop_proof', 'DPoP proof htu mismatch');
  }
  if (typeof payload.iat !== 'number') throw new ProofError('invalid_dpop_proof', 'DPoP proof has no iat');
  if (Math.abs(nowS() - payload.iat) > iatWindowS) throw new ProofError('invalid_dpop_proof', 'DPoP proof iat is not recent enough');
  if (typeof payload.jti !== 'string' || !payload.jti) throw new ProofError('invalid_dpop_proof', 'DPoP proof has no jti');
  if (state.dpopJtis.has(payload.jti)) throw new ProofError('invalid_dpop_proof', 'DPoP proof jti reused');
  if (payload.ath !== b64urlSha256(accessToken)) throw new ProofError('invalid_dpop_proof', 'DPoP proof ath mismatch');
  if (token.cnf?.jkt === undefined) throw new ProofError('invalid_token', 'token is not DPoP-bound (no cnf.jkt)');
  if (token.cnf.jkt !== jkt) throw new ProofError('invalid_token', 'DPoP proof key does not match cnf.jkt');
  const n = state.dpopNonce;
  if (n.on) {
    if (n.alwaysNew) n.current = newNonce();
    if (payload.nonce === undefined || n.alwaysNew) throw new ProofError('use_dpop_nonce', 'Resource server requires nonce in DPoP proof');
    if (payload.nonce !== n.current) throw new ProofError('use_dpop_nonce', 'DPoP proof nonce is not the current one');
  }
  state.dpopJtis.set(payload.jti, Date.now());
  return { jkt };
}

function dpopChallenge(error, description) {
  return `DPoP error="${error}", error_description="${description.replace(/["\\]/g, '')}", algs="${DPOP_ALGS.join(' ')}"`;
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
      send(res, 200, { ok: true, dpop_nonce: dpopNonceState() });
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
    case 'POST /_test/config': {
      const b = await readJson(req);
      if (b.require_cnf !== undefined) state.requireCnf = !!b.require_cnf;
      if (b.dpop_nonce !== undefined) state.dpopNonce.on = !!b.dpop_nonce;
      if (b.dpop_nonce_always_new !== undefined) state.dpopNonce.alwaysNew = !!b.dpop_nonce_always_new;
      send(res, 200, { ok: true, require_cnf: state.requireCnf, dpop_nonce: dpopNonceState() });
      return;
    }
    case 'GET /_test/dpop_nonce':
      send(res, 200, dpopNonceState());
      return;
    case 'POST /_test/dpop_nonce': {
      // {"rotate":true} a fresh nonce; {"value":"..."} this one; {"on":bool}; {"always_new":bool}
      const b = await readJson(req);
      if (b.on !== undefined) state.dpopNonce.on = !!b.on;
      if (b.always_new !== undefined) state.dpopNonce.alwaysNew = !!b.always_new;
      if (b.value !== undefined) {
        if (typeof b.value !== 'string' || !/^[\x21\x23-\x5b\x5d-\x7e]+$/.test(b.value)) throw new Error('value must be a non-empty NQCHAR string');
        state.dpopNonce.current = b.value;
      } else if (b.rotate) {
        state.dpopNonce.current = newNonce();
      }
      send(res, 200, dpopNonceState());
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

function dpopNonceState() {
  const n = state.dpopNonce;
  return { on: n.on, always_new: n.alwaysNew, current: n.current, challenges: n.challenges, accepted: state.dpopCounts.accepted, rejected: state.dpopCounts.rejected };
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
    client_cert: clientCertificate(req),
  };
  state.records.push(record);
  if (state.records.length > maxRecords) state.records.splice(0, state.records.length - maxRecords);

  const finish = (status, body, headers = {}) => {
    record.status = status;
    if (headers['www-authenticate']) record.www_authenticate = headers['www-authenticate'];
    if (headers['dpop-nonce']) record.dpop_nonce_header = headers['dpop-nonce'];
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
  const m = authz ? /^(Bearer|DPoP)[ ]+(\S+)\s*$/i.exec(authz) : null;
  const dpopScheme = !!m && m[1].toLowerCase() === 'dpop';
  record.authorization_scheme = authz ? String(authz).split(' ')[0] : undefined;
  record.bearer_present = !!m && !dpopScheme;
  record.dpop_scheme = dpopScheme;
  record.dpop_present = req.headers.dpop !== undefined;
  if (!m) {
    record.token_error = authz ? 'authorization is not a Bearer token' : 'no authorization';
    finish(401, { error: 'invalid_request', error_description: record.token_error }, {
      'www-authenticate': authz ? bearerChallenge('invalid_request', record.token_error) : bearerChallenge(),
    });
    return;
  }
  const challenge = dpopScheme ? dpopChallenge : bearerChallenge;

  let token;
  try {
    token = await validate(m[2]);
  } catch (err) {
    if (!(err instanceof TokenError)) throw err;
    record.token_error = err.message;
    finish(401, { error: 'invalid_token', error_description: err.message }, {
      'www-authenticate': challenge('invalid_token', err.message),
    });
    return;
  }
  record.token = token;

  // RFC 8705 §3: certificate-bound tokens (any scheme).
  const cnfError = checkCnfX5t(token, record.client_cert);
  if (cnfError) {
    record.cnf_error = cnfError;
    record.token_error = cnfError;
    finish(401, { error: 'invalid_token', error_description: cnfError }, {
      'www-authenticate': challenge('invalid_token', cnfError),
    });
    return;
  }

  // RFC 9449 §7.1/§7.2: a DPoP-bound token only with the DPoP scheme and a valid proof.
  if (!dpopScheme && token.cnf?.jkt !== undefined) {
    record.dpop_error = 'DPoP-bound token used with the Bearer scheme';
    record.token_error = record.dpop_error;
    state.dpopCounts.rejected += 1;
    finish(401, { error: 'invalid_token', error_description: record.dpop_error }, {
      'www-authenticate': dpopChallenge('invalid_token', record.dpop_error),
    });
    return;
  }
  if (dpopScheme) {
    try {
      await validateDpop(req, m[2], token, record);
      state.dpopCounts.accepted += 1;
      record.dpop_valid = true;
    } catch (err) {
      if (!(err instanceof ProofError)) throw err;
      state.dpopCounts.rejected += 1;
      record.dpop_error = err.message;
      record.dpop_error_code = err.error;
      record.token_error = err.message;
      const headers = { 'www-authenticate': dpopChallenge(err.error, err.message) };
      if (err.error === 'use_dpop_nonce') {
        headers['dpop-nonce'] = state.dpopNonce.current;
        record.dpop_nonce_sent = state.dpopNonce.current;
        state.dpopNonce.challenges += 1;
      }
      finish(401, { error: err.error, error_description: err.message }, headers);
      return;
    }
  }

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
    client_cert: record.client_cert,
    dpop: record.dpop,
    dpop_valid: record.dpop_valid ?? false,
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

// TLS: a client MAY present a certificate (requestCert without rejectUnauthorized): it
// is recorded, and certificate-bound tokens are checked against it. `authorized` is true
// only for a chain that verifies against --tls-ca.
const server = args['tls-cert']
  ? https.createServer({
    cert: readFile(args['tls-cert']),
    key: readFile(args['tls-key']),
    ...(args['tls-ca'] ? { ca: readFile(args['tls-ca']) } : {}),
    requestCert: true,
    rejectUnauthorized: false,
  }, onRequest)
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
