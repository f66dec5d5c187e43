#!/usr/bin/env node
// A real OAuth2 authorization server for tollgate's tests: panva's oidc-provider
// (OpenID-certified) configured for the client credentials grant, plus test-only
// endpoints under /_test/ (request log, fault injection, secret rotation).
//
//   node idp.mjs --port P [--ttl SECONDS] [--format jwt|opaque]
//                [--default-resource URL] [--lenient-auth]
//                [--signing-key PEM | --generate-key] [--verbose]
//                [--tls-cert PEM --tls-key PEM [--tls-ca PEM]]
//                [--self-signed-client-cert PEM]... [--dpop-require-nonce]
//                [--exit-on-stdin-close]
//
// Listens on 127.0.0.1 only. Prints one JSON line on stdout when ready:
//   {"ready":true,"port":P,"issuer":"http://127.0.0.1:P","token_url":"http://127.0.0.1:P/token"}
// (https:// with --tls-cert: then clients may present a certificate, for RFC 8705
// tls_client_auth / self_signed_tls_client_auth and certificate-bound tokens).
// See README.md for the clients, endpoints and traps.

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import * as path from 'node:path';
import * as querystring from 'node:querystring';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import Provider from 'oidc-provider';

// stdout carries only the ready line: oidc-provider prints its notices with
// console.info (stdout) at run time, e.g. the first time a default policy runs.
const toStderr = (...a) => console.error(...a);
console.info = toStderr;
console.log = toStderr;
// We read the token request body ourselves (to log it) before oidc-provider does;
// it then warns once that a body was "already parsed". That is intended here.
const origWarn = console.warn;
console.warn = (...a) => {
  if (String(a[0]).includes('already parsed request body')) return;
  origWarn(...a);
};

const HERE = path.dirname(fileURLToPath(import.meta.url));
const HOST = '127.0.0.1';
const SCOPES = ['invoices:read', 'invoices:write', 'other:read'];
const ROUTES = { token: '/token', jwks: '/jwks', introspection: '/token/introspection', revocation: '/token/revocation' };
const ROTATING_DEFAULT_SECRET = 'rotating-secret';
const ROTATING_DEFAULT_METHOD = 'client_secret_basic';

// ---------------------------------------------------------------- arguments
const { values: args } = parseArgs({
  options: {
    port: { type: 'string', default: '0' },
    ttl: { type: 'string', default: '300' },
    format: { type: 'string', default: 'jwt' },
    'default-resource': { type: 'string', default: 'https://api.test' },
    'lenient-auth': { type: 'boolean', default: false },
    'signing-key': { type: 'string' },
    'generate-key': { type: 'boolean', default: false },
    verbose: { type: 'boolean', default: false },
    'tls-cert': { type: 'string' },
    'tls-key': { type: 'string' },
    'tls-ca': { type: 'string' },
    'self-signed-client-cert': { type: 'string', multiple: true, default: [] },
    'dpop-require-nonce': { type: 'boolean', default: false },
    'exit-on-stdin-close': { type: 'boolean', default: false },
  },
  strict: true,
});

function die(msg) {
  process.stderr.write(`idp: ${msg}\n`);
  process.exit(2);
}

const cliPort = Number(args.port);
if (!Number.isInteger(cliPort) || cliPort < 0 || cliPort > 65535) die(`bad --port ${args.port}`);
const cliTtl = Number(args.ttl);
if (!Number.isInteger(cliTtl) || cliTtl < 1) die(`bad --ttl ${args.ttl} (integer seconds >= 1)`);
if (!['jwt', 'opaque'].includes(args.format)) die(`bad --format ${args.format} (jwt|opaque)`);
if (!URL.canParse(args['default-resource'])) die(`bad --default-resource ${args['default-resource']}`);
if (!!args['tls-cert'] !== !!args['tls-key']) die('--tls-cert and --tls-key go together');
if (args['tls-ca'] && !args['tls-cert']) die('--tls-ca needs --tls-cert/--tls-key');
const TLS = !!args['tls-cert'];

// Runtime state. Everything here is restored by POST /_test/reset.
const initial = () => ({
  ttl: cliTtl,
  format: args.format,
  strictAuth: !args['lenient-auth'],
  rotating: { secret: ROTATING_DEFAULT_SECRET, method: ROTATING_DEFAULT_METHOD },
  fault: null, // { status, error, error_description, count, retry_after, close }
  delayMs: 0,
  // Changes to successful token responses: { fields: {name: value|null}, count }.
  rewrite: null,
  // Delay after the token was issued, before the answer is sent (a slow network).
  delayAfterMs: 0,
  // Extra headers on every token endpoint answer (e.g. Okta's X-Rate-Limit-*).
  headers: {},
  // DPoP (RFC 9449): demand a server nonce in token request proofs.
  dpopRequireNonce: args['dpop-require-nonce'],
  tokenRequests: [],
  introspectionRequests: 0,
  seq: 0,
});
let state = initial();

// ---------------------------------------------------------------- keys
// The provider's signing key (RS256): the committed fixture fixtures/idp-signing-rs256.pem
// by default, another PEM with --signing-key, or a fresh one with --generate-key.
// (Generating a 2048-bit RSA key takes 0.1-1 s, and much longer on a busy 2-core
// machine, so the fixture is the default.)
// Secret of oidc-provider's DPoP nonces (fresh for each process).
const DPOP_NONCE_SECRET = crypto.randomBytes(32);

const signingJwk = (() => {
  let privateKey;
  if (args['generate-key']) {
    ({ privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }));
  } else {
    const file = args['signing-key'] ?? path.join(HERE, 'fixtures', 'idp-signing-rs256.pem');
    privateKey = crypto.createPrivateKey(fs.readFileSync(file));
    if (privateKey.asymmetricKeyType !== 'rsa') die(`${file}: not an RSA private key`);
  }
  const jwk = privateKey.export({ format: 'jwk' });
  const members = { e: jwk.e, kty: jwk.kty, n: jwk.n };
  const kid = crypto.createHash('sha256').update(JSON.stringify(members)).digest('base64url');
  return { ...jwk, kid, alg: 'RS256', use: 'sig' };
})();

// Public JWKs of the private_key_jwt clients, derived from the committed fixtures.
// Each key is registered twice: with kid = a fixed name and with kid = its RFC 7638
// thumbprint, so an assertion with either kid, or with none, finds it.
function clientJwks(file, alg, name) {
  const pem = fs.readFileSync(path.join(HERE, 'fixtures', file));
  const pub = crypto.createPublicKey(pem).export({ format: 'jwk' });
  const members = pub.kty === 'EC' ? { crv: pub.crv, kty: pub.kty, x: pub.x, y: pub.y } : { e: pub.e, kty: pub.kty, n: pub.n };
  const thumbprint = crypto.createHash('sha256').update(JSON.stringify(members)).digest('base64url');
  return { keys: [{ ...pub, alg, use: 'sig', kid: name }, { ...pub, alg, use: 'sig', kid: thumbprint }] };
}

// ---------------------------------------------------------------- mutual TLS (RFC 8705)
// The registered subject of mtls-client (tls_client_auth). Compared with the presented
// certificate's subject as a set of attribute=value pairs (types case-insensitive), so
// the RDN order does not matter.
const MTLS_SUBJECT_DN = 'CN=mtls-client,O=tollgate-tests';
const SELF_SIGNED_CERTS = args['self-signed-client-cert'].map((file) => {
  try {
    return new crypto.X509Certificate(fs.readFileSync(file));
  } catch (err) {
    return die(`${file}: not a PEM certificate (${err.message})`);
  }
});
function selfSignedJwk(x509) {
  const pub = x509.publicKey.export({ format: 'jwk' });
  return { ...pub, use: 'sig', x5c: [x509.raw.toString('base64')] };
}
const TLS_METHODS = new Set(['tls_client_auth', 'self_signed_tls_client_auth']);

// The certificate the client presented on this connection (an X509Certificate), or
// undefined (plain HTTP, or no certificate).
function peerCertificate(ctx) {
  const sock = ctx.req.socket;
  if (!sock.encrypted || typeof sock.getPeerX509Certificate !== 'function') return undefined;
  return sock.getPeerX509Certificate() ?? undefined;
}

const certThumbprint = (x509) => crypto.createHash('sha256').update(x509.raw).digest('base64url');

// "CN=a\nO=b" (Node) or "CN=a,O=b" (RFC 4514, no escaped commas here) -> sorted pairs.
function dnPairs(dn) {
  return String(dn).split(/[\n,]/).map((p) => p.trim()).filter(Boolean).map((p) => {
    const i = p.indexOf('=');
    return i === -1 ? p : `${p.slice(0, i).trim().toUpperCase()}=${p.slice(i + 1).trim()}`;
  }).sort();
}

function subjectAltNames(x509) {
  const out = { dns: [], ip: [], uri: [], email: [] };
  for (const part of String(x509.subjectAltName ?? '').split(/,\s*/)) {
    const i = part.indexOf(':');
    if (i === -1) continue;
    const [type, value] = [part.slice(0, i), part.slice(i + 1)];
    if (type === 'DNS') out.dns.push(value);
    else if (type === 'IP Address') out.ip.push(value);
    else if (type === 'URI') out.uri.push(value);
    else if (type === 'email') out.email.push(value);
  }
  return out;
}

function describeCertificate(ctx) {
  const x509 = peerCertificate(ctx);
  if (!x509) return { present: false };
  const sock = ctx.req.socket;
  return {
    present: true,
    x5t_s256: certThumbprint(x509),
    subject: x509.subject,
    issuer: x509.issuer,
    self_signed: x509.subject === x509.issuer,
    authorized: sock.authorized === true,
    authorization_error: sock.authorized ? undefined : String(sock.authorizationError ?? ''),
    valid_to: x509.validTo,
  };
}

// ---------------------------------------------------------------- clients
const common = {
  grant_types: ['client_credentials'],
  response_types: [],
  redirect_uris: [],
  scope: SCOPES.join(' '),
};
const STATIC_CLIENTS = [
  { ...common, client_id: 'basic-client', client_secret: 'basic-secret', token_endpoint_auth_method: 'client_secret_basic' },
  { ...common, client_id: 'post-client', client_secret: 'post-secret', token_endpoint_auth_method: 'client_secret_post' },
  {
    ...common,
    client_id: 'jwt-client',
    token_endpoint_auth_method: 'private_key_jwt',
    token_endpoint_auth_signing_alg: 'ES256',
    jwks: clientJwks('jwt-client-es256.pem', 'ES256', 'jwt-client-es256'),
  },
  {
    ...common,
    client_id: 'jwt-rs-client',
    token_endpoint_auth_method: 'private_key_jwt',
    token_endpoint_auth_signing_alg: 'RS256',
    jwks: clientJwks('jwt-client-rs256.pem', 'RS256', 'jwt-client-rs256'),
  },
  // The protected upstream authenticates with this one to call introspection.
  { ...common, client_id: 'upstream-client', client_secret: 'upstream-secret', token_endpoint_auth_method: 'client_secret_basic' },
  // RFC 8705 §2.1: a certificate issued by the --tls-ca CA whose subject is MTLS_SUBJECT_DN.
  // Its tokens are bound to that certificate (cnf.x5t#S256).
  {
    ...common,
    client_id: 'mtls-client',
    token_endpoint_auth_method: 'tls_client_auth',
    tls_client_auth_subject_dn: MTLS_SUBJECT_DN,
    tls_client_certificate_bound_access_tokens: true,
  },
  // RFC 9449: every token request must carry a DPoP proof (dpop_bound_access_tokens).
  // Any other client may use DPoP too; its tokens are then DPoP-bound (cnf.jkt).
  {
    ...common,
    client_id: 'dpop-client',
    client_secret: 'dpop-secret',
    token_endpoint_auth_method: 'client_secret_basic',
    dpop_bound_access_tokens: true,
  },
  // RFC 8705 §2.2: self-signed certificates registered as JWKs with x5c (only with
  // --self-signed-client-cert; oidc-provider matches the presented certificate's
  // SHA-256 thumbprint against x5t#S256 of x5c[0]).
  ...(SELF_SIGNED_CERTS.length ? [{
    ...common,
    client_id: 'self-signed-client',
    token_endpoint_auth_method: 'self_signed_tls_client_auth',
    jwks: { keys: SELF_SIGNED_CERTS.map(selfSignedJwk) },
    tls_client_certificate_bound_access_tokens: true,
  }] : []),
];
const REGISTERED_METHOD = Object.fromEntries(STATIC_CLIENTS.map((c) => [c.client_id, c.token_endpoint_auth_method]));
const registeredMethod = (id) => (id === 'rotating-client' ? state.rotating.method : REGISTERED_METHOD[id]);

// ---------------------------------------------------------------- adapter
// In-memory storage with expiry. It also serves "rotating-client" as a dynamic
// client whose metadata (and so its secret) changes at runtime: oidc-provider keys
// its dynamic-client cache on a hash of the metadata, so a new secret takes effect
// at once and the old one stops working.
const store = new Map(); // key -> { payload, expiresAt }
const grantIndex = new Map(); // grantId -> Set(key)
const sweeper = setInterval(() => {
  const now = Date.now();
  for (const [k, v] of store) if (v.expiresAt && v.expiresAt <= now) store.delete(k);
}, 10_000);
sweeper.unref();

class TestAdapter {
  constructor(name) { this.name = name; }

  key(id) { return `${this.name}:${id}`; }

  async upsert(id, payload, expiresIn) {
    const key = this.key(id);
    store.set(key, { payload, expiresAt: expiresIn ? Date.now() + expiresIn * 1000 : 0 });
    if (payload.grantId) {
      if (!grantIndex.has(payload.grantId)) grantIndex.set(payload.grantId, new Set());
      grantIndex.get(payload.grantId).add(key);
    }
    if (payload.userCode) store.set(`userCode:${payload.userCode}`, { payload: id, expiresAt: 0 });
    if (payload.uid) store.set(`uid:${payload.uid}`, { payload: id, expiresAt: 0 });
  }

  async find(id) {
    if (this.name === 'Client') {
      if (id !== 'rotating-client') return undefined;
      return {
        ...common,
        client_id: 'rotating-client',
        client_secret: state.rotating.secret,
        token_endpoint_auth_method: state.rotating.method,
      };
    }
    const e = store.get(this.key(id));
    if (!e) return undefined;
    if (e.expiresAt && e.expiresAt <= Date.now()) {
      store.delete(this.key(id));
      return undefined;
    }
    return e.payload;
  }

  async findByUserCode(userCode) {
    const e = store.get(`userCode:${userCode}`);
    return e ? this.find(e.payload) : undefined;
  }

  async findByUid(uid) {
    const e = store.get(`uid:${uid}`);
    return e ? this.find(e.payload) : undefined;
  }

  async consume(id) {
    const e = store.get(this.key(id));
    if (e) e.payload.consumed = Math.floor(Date.now() / 1000);
  }

  async destroy(id) { store.delete(this.key(id)); }

  async revokeByGrantId(grantId) {
    for (const k of grantIndex.get(grantId) ?? []) store.delete(k);
    grantIndex.delete(grantId);
  }
}

// ---------------------------------------------------------------- helpers
const sleep = (ms) => new Promise((r) => { setTimeout(r, ms); });

function decodeJwtParts(token) {
  try {
    const [h, p] = String(token).split('.');
    return {
      header: JSON.parse(Buffer.from(h, 'base64url').toString('utf8')),
      payload: JSON.parse(Buffer.from(p, 'base64url').toString('utf8')),
    };
  } catch {
    return null;
  }
}

async function readRaw(req, limit = 1024 * 1024) {
  const chunks = [];
  let n = 0;
  for await (const c of req) {
    n += c.length;
    if (n > limit) throw Object.assign(new Error('body too large'), { status: 413 });
    chunks.push(c);
  }
  return Buffer.concat(chunks, n);
}

function redactHeaders(headers) {
  const out = {};
  for (const [k, v] of Object.entries(headers)) {
    if (k === 'authorization') {
      const scheme = String(v).split(' ')[0];
      out[k] = `${scheme} <redacted>`;
    } else {
      out[k] = v;
    }
  }
  return out;
}

// Describe how the client authenticated, from what is on the wire.
function describeAuth(headers, form) {
  const auth = {};
  const methods = [];
  let clientId;
  const authz = headers.authorization;
  auth.authorization_header_present = authz !== undefined;
  if (authz !== undefined) {
    const [scheme, cred] = String(authz).split(' ');
    auth.authorization_scheme = scheme;
    if (scheme?.toLowerCase() === 'basic' && cred) {
      methods.push('client_secret_basic');
      const decoded = Buffer.from(cred, 'base64').toString('utf8');
      const i = decoded.indexOf(':');
      if (i !== -1) {
        try {
          clientId = decodeURIComponent(decoded.slice(0, i).replace(/\+/g, '%20'));
        } catch {
          clientId = decoded.slice(0, i);
        }
        auth.basic_client_id = clientId;
        auth.basic_secret_present = decoded.length > i + 1;
      }
    }
  }
  auth.client_id_in_form = form.client_id !== undefined;
  auth.client_secret_present = form.client_secret !== undefined;
  if (auth.client_secret_present) methods.push('client_secret_post');
  auth.client_assertion_present = form.client_assertion !== undefined;
  if (auth.client_assertion_present) {
    const d = decodeJwtParts(form.client_assertion);
    auth.client_assertion_type = form.client_assertion_type;
    if (d) {
      auth.client_assertion = {
        alg: d.header.alg,
        kid: d.header.kid,
        typ: d.header.typ,
        iss: d.payload.iss,
        sub: d.payload.sub,
        aud: d.payload.aud,
        iat: d.payload.iat,
        exp: d.payload.exp,
        jti: d.payload.jti,
      };
      clientId ??= d.payload.sub;
      methods.push(String(d.header.alg).startsWith('HS') ? 'client_secret_jwt' : 'private_key_jwt');
    } else {
      methods.push('private_key_jwt');
    }
  }
  if (form.client_id !== undefined) clientId ??= form.client_id;
  let method = 'none';
  if (methods.length === 1) [method] = methods;
  else if (methods.length > 1) method = 'multiple';
  return { clientId, method, methods, auth };
}

// What the DPoP header of a token request carried (decoded, not verified: oidc-provider
// verifies it). Proofs are not secrets; the access token is never part of one.
function describeDpop(ctx) {
  const count = ctx.req.rawHeaders.filter((h, i) => i % 2 === 0 && h.toLowerCase() === 'dpop').length;
  if (count === 0) return { dpop_proof_present: false, dpop_nonce_present: false };
  const d = decodeJwtParts(ctx.get('dpop'));
  const out = { dpop_proof_present: true, dpop_proof_count: count };
  if (d) {
    let jkt;
    try {
      const { jwk } = d.header;
      const members = jwk.kty === 'EC' ? { crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y }
        : jwk.kty === 'RSA' ? { e: jwk.e, kty: jwk.kty, n: jwk.n } : { crv: jwk.crv, kty: jwk.kty, x: jwk.x };
      jkt = crypto.createHash('sha256').update(JSON.stringify(members)).digest('base64url');
    } catch {
      jkt = undefined;
    }
    out.dpop_proof = {
      typ: d.header.typ,
      alg: d.header.alg,
      jwk_kty: d.header.jwk?.kty,
      jwk_crv: d.header.jwk?.crv,
      jwk_thumbprint: jkt,
      htm: d.payload.htm,
      htu: d.payload.htu,
      iat: d.payload.iat,
      jti: d.payload.jti,
      nonce: d.payload.nonce,
      ath: d.payload.ath,
    };
    out.dpop_nonce_present = typeof d.payload.nonce === 'string';
  } else {
    out.dpop_nonce_present = false;
  }
  return out;
}

function json(ctx, status, body, headers = {}) {
  ctx.status = status;
  ctx.type = 'application/json';
  for (const [k, v] of Object.entries(headers)) ctx.set(k, v);
  ctx.body = body;
}

async function readJsonBody(ctx) {
  const raw = await readRaw(ctx.req);
  if (!raw.length) return {};
  return JSON.parse(raw.toString('utf8'));
}

// ---------------------------------------------------------------- start
// With --tls-cert: HTTPS, and a client MAY present a certificate (requestCert without
// rejectUnauthorized): oidc-provider decides (mTLS.getCertificate/certificateAuthorized).
// `authorized` is true only for a chain that verifies against --tls-ca.
function readFile(file) {
  try {
    return fs.readFileSync(file);
  } catch (err) {
    return die(`${file}: ${err.message}`);
  }
}
const server = TLS
  ? https.createServer({
    cert: readFile(args['tls-cert']),
    key: readFile(args['tls-key']),
    ...(args['tls-ca'] ? { ca: readFile(args['tls-ca']) } : {}),
    requestCert: true,
    rejectUnauthorized: false,
  })
  : http.createServer();
server.on('error', (err) => die(`listen failed: ${err.message}`));
server.on('tlsClientError', (err) => {
  if (args.verbose) process.stderr.write(`idp: TLS handshake failed: ${err.message}\n`);
});
server.listen(cliPort, HOST, () => {
  const { port } = server.address();
  const issuer = `${TLS ? 'https' : 'http'}://${HOST}:${port}`;

  const provider = new Provider(issuer, {
    adapter: TestAdapter,
    clients: STATIC_CLIENTS,
    jwks: { keys: [signingJwk] },
    scopes: SCOPES,
    routes: ROUTES,
    cookies: { keys: ['tollgate-test-idp-cookie-key'] },
    clientAuthMethods: [
      'client_secret_basic', 'client_secret_jwt', 'client_secret_post', 'private_key_jwt', 'none',
      'tls_client_auth', 'self_signed_tls_client_auth',
    ],
    clientDefaults: {
      grant_types: ['client_credentials'],
      response_types: [],
      id_token_signed_response_alg: 'RS256',
      token_endpoint_auth_method: 'client_secret_basic',
    },
    features: {
      devInteractions: { enabled: false },
      // RFC 8705. The certificate comes from our own https server (requestCert).
      mTLS: {
        enabled: true,
        certificateBoundAccessTokens: true,
        tlsClientAuth: true,
        selfSignedTlsClientAuth: true,
        getCertificate: (ctx) => peerCertificate(ctx),
        // tls_client_auth: the chain must verify against --tls-ca (Node checked it
        // during the handshake: requestCert with rejectUnauthorized false).
        certificateAuthorized: (ctx) => ctx.req.socket.authorized === true,
        certificateSubjectMatches: (ctx, property, expected) => {
          const x509 = peerCertificate(ctx);
          if (!x509) return false;
          const san = subjectAltNames(x509);
          switch (property) {
            case 'tls_client_auth_subject_dn':
              return JSON.stringify(dnPairs(x509.subject)) === JSON.stringify(dnPairs(expected));
            case 'tls_client_auth_san_dns': return san.dns.includes(expected);
            case 'tls_client_auth_san_ip': return san.ip.includes(expected);
            case 'tls_client_auth_san_uri': return san.uri.includes(expected);
            case 'tls_client_auth_san_email': return san.email.includes(expected);
            default: return false;
          }
        },
      },
      // RFC 9449. Nonces (HMAC-derived, valid about 5 minutes, a new one offered every
      // 60 s) are offered in DPoP-Nonce; demanded with --dpop-require-nonce.
      dPoP: {
        enabled: true,
        nonceSecret: DPOP_NONCE_SECRET,
        requireNonce: () => state.dpopRequireNonce,
        allowReplay: false,
      },
      clientCredentials: { enabled: true },
      introspection: { enabled: true, allowedPolicy: async () => true },
      revocation: { enabled: true, allowedPolicy: async (ctx, client, token) => token.clientId === client.clientId },
      resourceIndicators: {
        enabled: true,
        // Without a resource parameter, the token is still issued for this resource
        // (so it is a JWT with aud and TTL like the others).
        defaultResource: async () => args['default-resource'],
        useGrantedResource: async () => true,
        getResourceServerInfo: async (ctx, resourceIndicator) => ({
          scope: SCOPES.join(' '),
          audience: resourceIndicator,
          accessTokenTTL: state.ttl,
          accessTokenFormat: state.format,
          jwt: { sign: { alg: 'RS256' } },
        }),
      },
    },
    ttl: {
      ClientCredentials: (ctx, token) => token.resourceServer?.accessTokenTTL ?? state.ttl,
      AccessToken: (ctx, token) => token.resourceServer?.accessTokenTTL ?? state.ttl,
      Grant: 3600,
      IdToken: 3600,
      Interaction: 3600,
      Session: 3600,
      RefreshToken: 3600,
      AuthorizationCode: 60,
      DeviceCode: 600,
      BackchannelAuthenticationRequest: 600,
    },
    // Millisecond issue time, so the test upstream's "revoke everything issued
    // before now" is exact even within one second.
    extraTokenClaims: async () => ({ iat_ms: Date.now() }),
    enabledJWA: {
      clientAuthSigningAlgValues: ['RS256', 'PS256', 'ES256', 'EdDSA', 'HS256'],
    },
  });

  // The reason oidc-provider keeps to itself (error_detail): recorded for the tests.
  provider.on('grant.error', (ctx, err) => {
    const entry = ctx.state?.tollgateEntry;
    if (entry && err?.error_detail !== undefined) entry.error_detail = err.error_detail;
  });

  provider.on('server_error', (ctx, err) => {
    process.stderr.write(`idp: server_error ${ctx.method} ${ctx.path}: ${err?.stack || err}\n`);
  });

  provider.use(async (ctx, next) => {
    if (ctx.path.startsWith('/_test/')) {
      try {
        await testEndpoint(ctx);
      } catch (err) {
        json(ctx, err.status || 400, { error: 'bad_request', error_description: err.message });
      }
      return;
    }
    if (ctx.path === ROUTES.introspection && ctx.method === 'POST') state.introspectionRequests += 1;
    if (ctx.path === ROUTES.token && ctx.method === 'POST') {
      await tokenRequest(ctx, next);
      return;
    }
    await next();
  });

  async function testEndpoint(ctx) {
    const route = `${ctx.method} ${ctx.path}`;
    switch (route) {
      case 'GET /_test/stats': {
        const byClient = {};
        const byMethod = {};
        const detail = {};
        for (const r of state.tokenRequests) {
          const id = r.client_id ?? '(none)';
          byClient[id] = (byClient[id] ?? 0) + 1;
          byMethod[r.auth_method] = (byMethod[r.auth_method] ?? 0) + 1;
          detail[id] ??= { requests: 0, with_dpop_proof: 0, with_dpop_nonce: 0, with_client_cert: 0, use_dpop_nonce: 0, issued: 0 };
          const c = detail[id];
          c.requests += 1;
          if (r.dpop_proof_present) c.with_dpop_proof += 1;
          if (r.dpop_nonce_present) c.with_dpop_nonce += 1;
          if (r.client_cert?.present) c.with_client_cert += 1;
          if (r.error === 'use_dpop_nonce') c.use_dpop_nonce += 1;
          if (r.issued) c.issued += 1;
        }
        json(ctx, 200, {
          token_requests: state.tokenRequests.length,
          by_client: byClient,
          by_auth_method: byMethod,
          by_client_detail: detail,
          dpop_require_nonce: state.dpopRequireNonce,
          tls: TLS,
          introspection_requests: state.introspectionRequests,
          fault: state.fault,
          rewrite: state.rewrite,
          delay_ms: state.delayMs,
          delay_after_ms: state.delayAfterMs,
          ttl: state.ttl,
          format: state.format,
          strict_auth: state.strictAuth,
          rotating_client: { auth_method: state.rotating.method },
          requests: state.tokenRequests,
        });
        return;
      }
      case 'POST /_test/reset':
        await readRaw(ctx.req);
        state = initial();
        json(ctx, 200, { ok: true });
        return;
      case 'POST /_test/fault': {
        const b = await readJsonBody(ctx);
        if (b.delay_ms !== undefined) {
          const d = Number(b.delay_ms);
          if (!Number.isFinite(d) || d < 0) throw new Error('delay_ms must be a number >= 0');
          state.delayMs = d;
        }
        if (b.delay_after_ms !== undefined) {
          const d = Number(b.delay_after_ms);
          if (!Number.isFinite(d) || d < 0) throw new Error('delay_after_ms must be a number >= 0');
          state.delayAfterMs = d;
        }
        if (b.clear) {
          state.fault = null;
          state.rewrite = null;
        }
        if (b.rewrite !== undefined) {
          if (b.rewrite === null) {
            state.rewrite = null;
          } else {
            if (typeof b.rewrite !== 'object' || Array.isArray(b.rewrite)) throw new Error('rewrite must be an object of fields');
            const count = b.count === undefined ? -1 : Number(b.count);
            if (!Number.isInteger(count) || count < -1) throw new Error('count must be an integer >= -1');
            state.rewrite = { fields: b.rewrite, count };
          }
        }
        if (b.status !== undefined || b.close) {
          const status = b.close ? 0 : Number(b.status);
          if (!b.close && !(Number.isInteger(status) && status >= 200 && status <= 599)) throw new Error('status must be an HTTP status');
          const count = b.count === undefined ? 1 : Number(b.count);
          if (!Number.isInteger(count) || count < -1) throw new Error('count must be an integer >= -1');
          state.fault = {
            status,
            close: !!b.close,
            error: b.error,
            error_description: b.error_description,
            retry_after: b.retry_after,
            count,
          };
        }
        json(ctx, 200, { ok: true, fault: state.fault, rewrite: state.rewrite, delay_ms: state.delayMs, delay_after_ms: state.delayAfterMs });
        return;
      }
      case 'POST /_test/rotate': {
        const b = await readJsonBody(ctx);
        if (b.client_id !== 'rotating-client') throw new Error('only client_id "rotating-client" can be rotated');
        if (typeof b.secret !== 'string' || !b.secret) throw new Error('secret must be a non-empty string');
        if (b.auth_method !== undefined && !['client_secret_basic', 'client_secret_post'].includes(b.auth_method)) {
          throw new Error('auth_method must be client_secret_basic or client_secret_post');
        }
        state.rotating = { secret: b.secret, method: b.auth_method ?? state.rotating.method };
        json(ctx, 200, { ok: true, client_id: 'rotating-client', auth_method: state.rotating.method });
        return;
      }
      case 'POST /_test/config': {
        const b = await readJsonBody(ctx);
        if (b.ttl !== undefined) {
          if (!Number.isInteger(b.ttl) || b.ttl < 1) throw new Error('ttl must be an integer >= 1');
          state.ttl = b.ttl;
        }
        if (b.format !== undefined) {
          if (!['jwt', 'opaque'].includes(b.format)) throw new Error('format must be jwt or opaque');
          state.format = b.format;
        }
        if (b.strict_auth !== undefined) state.strictAuth = !!b.strict_auth;
        if (b.dpop_require_nonce !== undefined) state.dpopRequireNonce = !!b.dpop_require_nonce;
        if (b.headers !== undefined) {
          if (b.headers !== null && (typeof b.headers !== 'object' || Object.values(b.headers).some((v) => typeof v !== 'string'))) {
            throw new Error('headers must be an object of strings, or null');
          }
          state.headers = b.headers ?? {};
        }
        json(ctx, 200, { ok: true, ttl: state.ttl, format: state.format, strict_auth: state.strictAuth, headers: state.headers, dpop_require_nonce: state.dpopRequireNonce });
        return;
      }
      default:
        json(ctx, 404, { error: 'not_found', error_description: `no test endpoint ${route}` });
    }
  }

  async function tokenRequest(ctx, next) {
    const raw = await readRaw(ctx.req);
    const contentType = ctx.get('content-type');
    const form = ctx.is('application/x-www-form-urlencoded') ? querystring.parse(raw.toString('utf8')) : {};
    const described = describeAuth(ctx.headers, form);
    const { clientId, methods, auth } = described;
    let { method } = described;
    const clientCert = describeCertificate(ctx);
    // mutual TLS: on the wire only a client_id in the form, and the certificate.
    const registeredNow = clientId !== undefined ? registeredMethod(clientId) : undefined;
    if (method === 'none' && clientCert.present) {
      method = TLS_METHODS.has(registeredNow) ? registeredNow : (clientCert.authorized ? 'tls_client_auth' : 'self_signed_tls_client_auth');
    }
    const dpop = describeDpop(ctx);
    const fields = {};
    for (const [k, v] of Object.entries(form)) {
      if (k === 'client_secret' || k === 'client_assertion') continue;
      fields[k] = v;
    }
    state.seq += 1;
    const entry = {
      seq: state.seq,
      received_at: new Date().toISOString(),
      received_at_ms: Date.now(),
      client_id: clientId,
      auth_method: method,
      ...(methods.length > 1 ? { auth_methods: methods } : {}),
      ...auth,
      content_type: contentType || undefined,
      grant_type: form.grant_type,
      scope: form.scope,
      resource: form.resource,
      audience: form.audience,
      fields,
      headers: redactHeaders(ctx.headers),
      client_cert: clientCert,
      ...dpop,
    };
    state.tokenRequests.push(entry);
    ctx.state.tollgateEntry = entry;
    const log = () => {
      entry.duration_ms = Date.now() - entry.received_at_ms;
      if (args.verbose) {
        const extra = `${entry.client_cert.present ? ' cert' : ''}${entry.dpop_proof_present ? ' dpop' : ''}${entry.dpop_nonce_present ? '+nonce' : ''}`;
        process.stderr.write(`idp: token #${entry.seq} client=${entry.client_id} method=${entry.auth_method}${extra} -> ${entry.status}${entry.error ? ` ${entry.error}` : ''}${entry.error_detail ? ` (${entry.error_detail})` : ''}${entry.fault ? ' (fault)' : ''}\n`);
      }
    };

    if (state.delayMs > 0) await sleep(state.delayMs);

    const fault = state.fault;
    if (fault && fault.count !== 0) {
      if (fault.count > 0) fault.count -= 1;
      if (fault.count === 0) state.fault = null;
      entry.fault = true;
      if (fault.close) {
        entry.status = 0;
        entry.error = 'connection_closed';
        ctx.respond = false;
        ctx.req.socket.destroy();
        log();
        return;
      }
      const error = fault.error ?? (fault.status >= 500 ? (fault.status === 503 ? 'temporarily_unavailable' : 'server_error') : fault.status === 401 ? 'invalid_client' : fault.status === 429 ? 'slow_down' : 'invalid_request');
      const headers = { 'cache-control': 'no-store' };
      if (fault.retry_after !== undefined) headers['retry-after'] = String(fault.retry_after);
      Object.assign(headers, state.headers);
      if (fault.status === 401 && ctx.headers.authorization !== undefined) headers['www-authenticate'] = `Basic realm="${issuer}", error="${error}"`;
      json(ctx, fault.status, { error, error_description: fault.error_description ?? 'injected fault (tollgate test IdP)' }, headers);
      entry.status = fault.status;
      entry.error = error;
      log();
      return;
    }

    // oidc-provider accepts client_secret_basic and client_secret_post for a client
    // registered with either one. Real servers often do not: be strict by default.
    const registered = registeredNow;
    // A mutual TLS client that sent no certificate: let oidc-provider refuse it.
    const tlsWithout = TLS_METHODS.has(registered) && method === 'none';
    if (state.strictAuth && registered && method !== registered && method !== 'multiple' && !tlsWithout) {
      const error = 'invalid_client';
      const headers = {};
      if (ctx.headers.authorization !== undefined) headers['www-authenticate'] = `Basic realm="${issuer}", error="${error}"`;
      json(ctx, 401, { error, error_description: `client ${clientId} is registered for ${registered} but used ${method} (strict test IdP)` }, headers);
      entry.status = 401;
      entry.error = error;
      entry.strict_auth_rejected = true;
      log();
      return;
    }

    // "audience" (Auth0-style) is taken as a resource indicator when no resource is given.
    if (form.audience !== undefined && form.resource === undefined) {
      form.resource = form.audience;
    }
    delete form.audience;
    // Hand the (already read) body to oidc-provider's parser.
    ctx.req.body = Buffer.from(ctx.is('application/x-www-form-urlencoded') ? querystring.stringify(form) : raw);

    await next();
    for (const [k, v] of Object.entries(state.headers)) ctx.set(k, v);

    entry.status = ctx.status;
    const answeredNonce = ctx.response.get('dpop-nonce');
    if (answeredNonce) entry.dpop_nonce_answered = answeredNonce;
    const body = ctx.body;
    if (body && typeof body === 'object' && !Buffer.isBuffer(body)) {
      if (body.error) {
        entry.error = body.error;
        entry.error_description = body.error_description;
      }
      if (body.access_token) {
        const d = decodeJwtParts(body.access_token);
        entry.issued = {
          token_type: body.token_type,
          expires_in: body.expires_in,
          scope: body.scope,
          format: d ? 'jwt' : 'opaque',
          jti: d ? d.payload.jti : body.access_token,
          aud: d ? d.payload.aud : undefined,
          exp: d ? d.payload.exp : undefined,
          cnf: d ? d.payload.cnf : undefined,
        };
        const rw = state.rewrite;
        if (rw && rw.count !== 0) {
          if (rw.count > 0) rw.count -= 1;
          if (rw.count === 0) state.rewrite = null;
          for (const [k, v] of Object.entries(rw.fields)) {
            if (v === null) delete body[k];
            else body[k] = v;
          }
          entry.rewritten = rw.fields;
        }
      }
    }
    if (state.delayAfterMs > 0) await sleep(state.delayAfterMs);
    log();
  }

  server.on('request', provider.callback());
  process.stdout.write(`${JSON.stringify({ ready: true, port, issuer, token_url: `${issuer}${ROUTES.token}` })}\n`);
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
