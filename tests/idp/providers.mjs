#!/usr/bin/env node
// Local stand-ins for the token endpoints of Auth0, Okta, Microsoft Entra ID, AWS
// Cognito, Google (OAuth 2 and STS) and Keycloak, for tollgate's tests: no real
// provider can run here. Each one checks the exact request its provider documents
// (method, path, content type, the set of form fields, Basic vs body, assertion header
// and claims, signatures verified with the registered public key) and answers as the
// provider does, error bodies included. A request that deviates from the documented
// shape is answered with the provider's error AND recorded with its `violations`, so a
// test fails if one field changes.
//
//   node providers.mjs --port P [--verbose] [--exit-on-stdin-close]
//
// Listens on 127.0.0.1 only. Prints {"ready":true,"port":P,"base":"http://127.0.0.1:P"}
// on stdout. Registrations, paths and test endpoints: README.md ("providers.mjs").

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import { SignJWT, decodeProtectedHeader, errors as joseErrors, jwtVerify } from 'jose';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const HOST = '127.0.0.1';
const FORM = 'application/x-www-form-urlencoded';

const { values: args } = parseArgs({
  options: {
    port: { type: 'string', default: '0' },
    verbose: { type: 'boolean', default: false },
    'exit-on-stdin-close': { type: 'boolean', default: false },
  },
  strict: true,
});

// ---------------------------------------------------------------- keys
const fixture = (f) => fs.readFileSync(path.join(HERE, 'fixtures', f));
// The client key registered with Auth0, Okta, Entra (as a certificate), Google (as a
// service account key) and Keycloak: the RS256 fixture.
const CLIENT_KEY = crypto.createPublicKey(fixture('jwt-client-rs256.pem'));
const CLIENT_CERT = new crypto.X509Certificate(fixture('jwt-client-rs256-cert.pem'));
const CERT_X5T_S256 = crypto.createHash('sha256').update(CLIENT_CERT.raw).digest('base64url');
const CERT_X5T = crypto.createHash('sha1').update(CLIENT_CERT.raw).digest('base64url');
// The "cluster" key that signs projected service account tokens (minted by /_test/mint)
// and Google's ID tokens: the ES256 fixture.
const CLUSTER_PRIVATE = crypto.createPrivateKey(fixture('jwt-client-es256.pem'));
const CLUSTER_PUBLIC = crypto.createPublicKey(CLUSTER_PRIVATE);

// ---------------------------------------------------------------- registrations
const ENTRA_TENANT = 'contoso';
const ENTRA_APP = '11111111-2222-3333-4444-555555555555';
const ENTRA_DEFAULT_SECRET = 'Tx8Q~abc.DEF';
const FEDERATED = {
  iss: 'https://oidc.prod-aks.azure.com/00000000-0000-0000-0000-000000000000/',
  sub: 'system:serviceaccount:billing:egress',
  aud: 'api://AzureADTokenExchange',
};
const SA_EMAIL = 'egress@tollgate-test.iam.gserviceaccount.com';
const SA_KID = 'test-key-1';
const STS_AUDIENCE = '//iam.googleapis.com/projects/123456/locations/global/workloadIdentityPools/tollgate/providers/test';
const STS_SUBJECT_AUD = 'https://iam.googleapis.com/projects/123456/locations/global/workloadIdentityPools/tollgate/providers/test';
const GOOGLE_SCOPE = 'https://www.googleapis.com/auth/cloud-platform';

const initial = () => ({
  seq: 0,
  requests: [],
  entraSecret: ENTRA_DEFAULT_SECRET,
  // okta/keycloak discovery: 'ok' | 'down' | 'wrong_issuer'
  discovery: { okta: 'ok', keycloak: 'ok' },
  // jti of assertions seen (each works once, as Entra, Okta and Auth0 require)
  jtis: new Set(),
  // access tokens Keycloak issued (subject tokens for its token exchange)
  keycloakTokens: new Set(),
});
let state = initial();

// ---------------------------------------------------------------- helpers
async function readBody(req, limit = 1 << 20) {
  const chunks = [];
  let n = 0;
  for await (const c of req) {
    n += c.length;
    if (n > limit) throw new Error('body too large');
    chunks.push(c);
  }
  return Buffer.concat(chunks, n).toString('utf8');
}

function send(res, status, body, headers = {}) {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store', ...headers });
  res.end(text);
}

const newToken = (p) => `${p}-${crypto.randomBytes(18).toString('base64url')}`;

// The decoded Basic credentials, raw (as Cognito and Entra read them: no URL decoding)
// and URL-decoded (as RFC 6749 §2.3.1 says, Auth0/Okta/Keycloak).
function basic(headers) {
  const a = headers.authorization;
  if (!a) return null;
  const [scheme, value] = a.split(' ');
  if (scheme !== 'Basic' || !value) return { scheme };
  const decoded = Buffer.from(value, 'base64').toString('utf8');
  const i = decoded.indexOf(':');
  if (i < 0) return { scheme, malformed: true };
  const rawId = decoded.slice(0, i);
  const rawSecret = decoded.slice(i + 1);
  const dec = (s) => { try { return decodeURIComponent(s.replace(/\+/g, '%20')); } catch { return s; } };
  return { scheme, rawId, rawSecret, id: dec(rawId), secret: dec(rawSecret) };
}

// Field set check: every `required` present (and equal when a value is given), nothing
// outside `required` ∪ `optional`. Returns violations.
function fields(form, required, optional = []) {
  const v = [];
  for (const [k, want] of Object.entries(required)) {
    if (!(k in form)) v.push(`missing form field ${k}`);
    else if (want !== null && form[k] !== want) v.push(`form field ${k} is ${JSON.stringify(form[k])}, expected ${JSON.stringify(want)}`);
  }
  for (const k of Object.keys(form)) {
    if (!(k in required) && !optional.includes(k)) v.push(`unexpected form field ${k}`);
  }
  return v;
}

// Verifies a client assertion (RFC 7523 §3). Returns { header, claims } or throws
// { code, description }.
async function verifyAssertion(jwt, { key, audience, issuer, algs, cert, once = true }) {
  let header;
  try {
    header = decodeProtectedHeader(jwt);
  } catch {
    throw { description: 'the client assertion is not a JWT' };
  }
  if (!algs.includes(header.alg)) throw { description: `alg ${header.alg} not allowed (${algs.join(', ')})` };
  if (cert) {
    if (!header['x5t#S256'] && !header.x5t) throw { code: 'AADSTS700027', description: 'Client assertion contains no x5t#S256 or x5t certificate thumbprint.' };
    if (header['x5t#S256'] && header['x5t#S256'] !== CERT_X5T_S256) throw { code: 'AADSTS700027', description: 'Client assertion failed signature validation: the x5t#S256 names no registered certificate.' };
    if (header.x5t && header.x5t !== CERT_X5T) throw { code: 'AADSTS700027', description: 'Client assertion failed signature validation: the x5t names no registered certificate.' };
  }
  let claims;
  try {
    ({ payload: claims } = await jwtVerify(jwt, key, { algorithms: algs, audience, issuer, subject: issuer, requiredClaims: ['exp', 'jti'], clockTolerance: 5 }));
  } catch (err) {
    if (err instanceof joseErrors.JWTExpired) throw { code: 'AADSTS700024', description: 'Client assertion is not within its valid time range.' };
    if (err instanceof joseErrors.JWSSignatureVerificationFailed) throw { code: 'AADSTS700027', description: 'Client assertion contains an invalid signature.' };
    throw { description: `client assertion rejected: ${err.message}` };
  }
  if (claims.exp - (claims.iat ?? Math.floor(Date.now() / 1000)) > 600) throw { description: 'client assertion lives longer than 10 minutes' };
  if (once) {
    if (state.jtis.has(claims.jti)) throw { description: 'client assertion jti replayed' };
    state.jtis.add(claims.jti);
  }
  return { header, claims };
}

// ---------------------------------------------------------------- providers
// Each handler gets { form, headers, base, entry } and returns [status, body]; it
// pushes deviations from the documented shape to entry.violations.

const ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';

// Auth0: POST /oauth/token; client_secret_post (its default) or Basic, or
// private_key_jwt with aud = the tenant's issuer (https://TENANT/, trailing slash);
// `audience` is required (the API identifier).
const AUTH0_APIS = { 'https://billing.example.com': ['read:invoices', 'write:invoices'] };
async function auth0({ form, headers, base, entry }) {
  const issuer = `${base}/auth0/`;
  const deny = (status, description) => [status, { error: 'access_denied', error_description: description }];
  let clientId;
  const b = basic(headers);
  if (form.client_assertion !== undefined) {
    entry.violations.push(...fields(form, { grant_type: 'client_credentials', client_assertion_type: ASSERTION_TYPE, client_assertion: null, audience: null }, ['scope', 'client_id']));
    if (b) entry.violations.push('Authorization header together with a client assertion');
    if (form.client_id !== undefined && form.client_id !== 'auth0-jwt') return deny(401, 'Unauthorized');
    try {
      const { header, claims } = await verifyAssertion(form.client_assertion, { key: CLIENT_KEY, audience: issuer, issuer: 'auth0-jwt', algs: ['RS256', 'PS256'] });
      entry.assertion = { header, claims };
    } catch (e) {
      return deny(401, e.description);
    }
    clientId = 'auth0-jwt';
  } else if (b) {
    entry.violations.push(...fields(form, { grant_type: 'client_credentials', audience: null }, ['scope']));
    if (b.id !== 'auth0-m2m' || b.secret !== 'auth0-secret') return deny(401, 'Unauthorized');
    clientId = b.id;
  } else {
    entry.violations.push(...fields(form, { grant_type: 'client_credentials', client_id: null, client_secret: null, audience: null }, ['scope']));
    if (form.client_id !== 'auth0-m2m' || form.client_secret !== 'auth0-secret') return deny(401, 'Unauthorized');
    clientId = form.client_id;
  }
  if (form.audience === undefined) return deny(403, 'No audience parameter was provided, and no default audience has been configured');
  const api = AUTH0_APIS[form.audience];
  if (!api) return deny(403, `Service not found: ${form.audience}`);
  const scope = form.scope ?? api.join(' ');
  for (const s of scope.split(' ')) if (!api.includes(s)) return deny(403, `Client has not been granted scopes: ${s}`);
  entry.client_id = clientId;
  return [200, { access_token: newToken('auth0'), scope, expires_in: 86400, token_type: 'Bearer' }];
}

// Okta (custom authorization server): discovery under the issuer; token endpoint
// ISSUER/v1/token; client_secret_basic or private_key_jwt (aud = the token endpoint);
// `scope` is required (no default scopes on a custom server).
const OKTA_SCOPES = ['billing.read', 'billing.write'];
async function okta({ form, headers, base, entry }) {
  const tokenUrl = `${base}/okta/oauth2/default/v1/token`;
  const invalidClient = [401, { error: 'invalid_client', error_description: 'The client secret supplied for a confidential client is invalid.' }];
  const b = basic(headers);
  if (form.client_assertion !== undefined) {
    entry.violations.push(...fields(form, { grant_type: 'client_credentials', client_assertion_type: ASSERTION_TYPE, client_assertion: null }, ['scope', 'client_id']));
    try {
      entry.assertion = await verifyAssertion(form.client_assertion, { key: CLIENT_KEY, audience: tokenUrl, issuer: 'okta-jwt', algs: ['RS256', 'ES256', 'PS256'] });
    } catch (e) {
      return [401, { error: 'invalid_client', error_description: `The client_assertion token is invalid. ${e.description}` }];
    }
    entry.client_id = 'okta-jwt';
  } else if (b) {
    entry.violations.push(...fields(form, { grant_type: 'client_credentials' }, ['scope']));
    if (b.id !== 'okta-svc' || b.secret !== 'okta-secret') return invalidClient;
    entry.client_id = b.id;
  } else {
    // Okta accepts client_secret_post only for clients registered for it; ours is basic.
    return [401, { error: 'invalid_client', error_description: 'Client authentication failed. Either the client or the client credentials are invalid.' }];
  }
  if (form.scope === undefined) return [400, { error: 'invalid_scope', error_description: "The authorization server resource does not have any configured default scopes, 'scope' must be provided." }];
  for (const s of form.scope.split(' ')) if (!OKTA_SCOPES.includes(s)) return [400, { error: 'invalid_scope', error_description: `One or more scopes are not configured for the authorization server resource.` }];
  return [200, { token_type: 'Bearer', expires_in: 3600, access_token: newToken('okta'), scope: form.scope }];
}

function oktaDiscovery(base) {
  const issuer = `${base}/okta/oauth2/default`;
  const mode = state.discovery.okta;
  if (mode === 'down') return [503, { errorCode: 'E0000009', errorSummary: 'Internal Server Error' }];
  return [200, {
    issuer: mode === 'wrong_issuer' ? `${base}/okta/oauth2/other` : issuer,
    authorization_endpoint: `${issuer}/v1/authorize`,
    token_endpoint: `${issuer}/v1/token`,
    jwks_uri: `${issuer}/v1/keys`,
    response_types_supported: ['code', 'token', 'id_token'],
    grant_types_supported: ['authorization_code', 'implicit', 'refresh_token', 'password', 'client_credentials', 'urn:ietf:params:oauth:grant-type:device_code', 'urn:ietf:params:oauth:grant-type:token-exchange'],
    token_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post', 'client_secret_jwt', 'private_key_jwt', 'none'],
    token_endpoint_auth_signing_alg_values_supported: ['HS256', 'HS384', 'HS512', 'RS256', 'RS384', 'RS512', 'ES256', 'ES384', 'ES512'],
    scopes_supported: ['openid', ...OKTA_SCOPES],
  }];
}

// Microsoft Entra ID v2.0: POST /{tenant}/oauth2/v2.0/token; client_id always in the
// body; scope must be RESOURCE/.default for client credentials; `resource` is a v1
// parameter and refused; a secret in the body or in Basic (not URL-decoded: a `~`
// sent as %7E does not match), a certificate assertion (x5t#S256 or x5t, RS256 or
// PS256, aud = the token URL) or a federated token (workload identity).
function aadsts(status, error, code, text) {
  return [status, {
    error,
    error_description: `AADSTS${code}: ${text} Trace ID: 00000000-0000-0000-0000-000000000000 Correlation ID: 00000000-0000-0000-0000-000000000000 Timestamp: ${new Date().toISOString().replace('T', ' ').slice(0, 19)}Z`,
    error_codes: [code],
    timestamp: new Date().toISOString().replace('T', ' ').slice(0, 19) + 'Z',
    trace_id: '00000000-0000-0000-0000-000000000000',
    correlation_id: '00000000-0000-0000-0000-000000000000',
    error_uri: `https://login.microsoftonline.com/error?code=${code}`,
  }];
}
async function entra({ form, headers, base, tenant, entry }) {
  const tokenUrl = `${base}/entra/${tenant}/oauth2/v2.0/token`;
  if (tenant !== ENTRA_TENANT) return aadsts(400, 'invalid_request', 90002, `Tenant '${tenant}' not found.`);
  if (form.resource !== undefined) {
    entry.violations.push('resource on the v2.0 endpoint');
    return aadsts(400, 'invalid_request', 901002, "The 'resource' request parameter is not supported.");
  }
  const b = basic(headers);
  const common = { grant_type: 'client_credentials', scope: null };
  if (form.client_assertion !== undefined) {
    entry.violations.push(...fields(form, { ...common, client_id: null, client_assertion_type: ASSERTION_TYPE, client_assertion: null }));
    if (form.client_id !== ENTRA_APP) return aadsts(400, 'unauthorized_client', 700016, `Application with identifier '${form.client_id}' was not found in the directory '${tenant}'.`);
    const header = (() => { try { return decodeProtectedHeader(form.client_assertion); } catch { return {}; } })();
    if (header['x5t#S256'] !== undefined || header.x5t !== undefined) {
      // A certificate credential.
      try {
        entry.assertion = await verifyAssertion(form.client_assertion, { key: CLIENT_CERT.publicKey, audience: tokenUrl, issuer: ENTRA_APP, algs: ['RS256', 'PS256'], cert: true });
      } catch (e) {
        return aadsts(401, 'invalid_client', Number(String(e.code ?? 'AADSTS700027').slice(6)), e.description);
      }
    } else {
      // A federated token (workload identity), signed by the cluster.
      let payload;
      try {
        ({ payload } = await jwtVerify(form.client_assertion, CLUSTER_PUBLIC, { algorithms: ['ES256'], clockTolerance: 5 }));
      } catch (err) {
        if (err instanceof joseErrors.JWTExpired) return aadsts(400, 'invalid_client', 700024, 'Client assertion is not within its valid time range.');
        return aadsts(401, 'invalid_client', 700027, 'Client assertion failed signature validation: it carries no x5t#S256 or x5t and is not a token of a federated identity provider.');
      }
      entry.assertion = { header, claims: payload, federated: true };
      if (payload.iss !== FEDERATED.iss) return aadsts(400, 'invalid_client', 700211, `No matching federated identity record found for presented assertion issuer '${payload.iss}'.`);
      if (payload.sub !== FEDERATED.sub) return aadsts(400, 'invalid_client', 700213, `No matching federated identity record found for presented assertion subject '${payload.sub}'.`);
      if (payload.aud !== FEDERATED.aud) return aadsts(400, 'invalid_client', 700212, `No matching federated identity record found for presented assertion audience '${payload.aud}'.`);
    }
  } else if (b) {
    entry.violations.push(...fields(form, common, ['client_id']));
    entry.basic_raw_secret_matches = b.rawSecret === state.entraSecret;
    if (b.rawId !== ENTRA_APP) return aadsts(400, 'unauthorized_client', 700016, `Application with identifier '${b.rawId}' was not found in the directory '${tenant}'.`);
    if (b.rawSecret !== state.entraSecret) return aadsts(401, 'invalid_client', 7000215, `Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '${ENTRA_APP}'.`);
  } else {
    entry.violations.push(...fields(form, { ...common, client_id: null, client_secret: null }));
    if (form.client_id !== ENTRA_APP) return aadsts(400, 'unauthorized_client', 700016, `Application with identifier '${form.client_id}' was not found in the directory '${tenant}'.`);
    if (form.client_secret !== state.entraSecret) return aadsts(401, 'invalid_client', 7000215, `Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '${ENTRA_APP}'.`);
  }
  if (form.scope === undefined) return aadsts(400, 'invalid_request', 900144, "The request body must contain the following parameter: 'scope'.");
  if (!/^\S+\/\.default$/.test(form.scope)) return aadsts(400, 'invalid_scope', 1002012, `The provided value for scope ${form.scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).`);
  if (form.scope !== 'api://billing/.default') return aadsts(400, 'invalid_resource', 500011, `The resource principal named ${form.scope.replace('/.default', '')} was not found in the tenant named ${tenant}.`);
  entry.client_id = ENTRA_APP;
  return [200, { token_type: 'Bearer', expires_in: 3599, ext_expires_in: 3599, access_token: newToken('entra') }];
}

// AWS Cognito: POST /oauth2/token with Content-Type exactly
// application/x-www-form-urlencoded, Basic base64(client_id:client_secret), scopes
// `resource-server-identifier/scope`. Errors are bare {"error": ...}.
const COGNITO_SCOPES = ['billing/read', 'billing/write'];
async function cognito({ form, headers, entry }) {
  const b = basic(headers);
  if (headers['content-type'] !== FORM) {
    entry.violations.push(`content-type ${headers['content-type']}`);
    return [400, { error: 'invalid_request' }];
  }
  entry.violations.push(...fields(form, { grant_type: 'client_credentials' }, ['scope', 'client_id']));
  if (!b || b.malformed || b.scheme !== 'Basic') {
    entry.violations.push('no Basic client authentication');
    return [400, { error: 'invalid_client' }];
  }
  if (b.rawId !== 'cognito-app-client' || b.rawSecret !== 'cognito-secret') return [400, { error: 'invalid_client' }];
  if (form.client_id !== undefined && form.client_id !== b.rawId) return [400, { error: 'invalid_client' }];
  const scope = form.scope ?? COGNITO_SCOPES.join(' ');
  for (const s of scope.split(' ')) if (!COGNITO_SCOPES.includes(s)) return [400, { error: 'invalid_scope' }];
  entry.client_id = b.rawId;
  return [200, { access_token: newToken('cognito'), expires_in: 3600, token_type: 'Bearer' }];
}

// Google OAuth 2 for service accounts: POST /token with exactly grant_type=jwt-bearer
// and assertion; the assertion: RS256, kid = private_key_id, iss = client_email,
// aud = token_uri, exp - iat <= 3600, and scope (access token) or target_audience
// (ID token).
async function google({ form, base, entry }) {
  const tokenUri = `${base}/google/token`;
  entry.violations.push(...fields(form, { grant_type: 'urn:ietf:params:oauth:grant-type:jwt-bearer', assertion: null }));
  if (form.grant_type !== 'urn:ietf:params:oauth:grant-type:jwt-bearer') return [400, { error: 'unsupported_grant_type', error_description: 'Invalid grant_type: ' + form.grant_type }];
  let header;
  let claims;
  try {
    header = decodeProtectedHeader(form.assertion);
    if (header.alg !== 'RS256') throw new Error('alg');
    ({ payload: claims } = await jwtVerify(form.assertion, CLIENT_KEY, { algorithms: ['RS256'], clockTolerance: 5 }));
  } catch (err) {
    if (err instanceof joseErrors.JWTExpired) return [400, { error: 'invalid_grant', error_description: 'Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.' }];
    return [400, { error: 'invalid_grant', error_description: 'Invalid JWT Signature.' }];
  }
  entry.assertion = { header, claims };
  if (header.kid !== SA_KID) entry.violations.push(`kid ${header.kid}`);
  if (header.typ !== 'JWT') entry.violations.push(`typ ${header.typ}`);
  if (claims.iss !== SA_EMAIL) return [400, { error: 'invalid_grant', error_description: 'Invalid grant: account not found' }];
  if (claims.aud !== tokenUri) return [400, { error: 'invalid_grant', error_description: 'Invalid JWT: Failed audience check. The right audience is ' + tokenUri }];
  const now = Math.floor(Date.now() / 1000);
  if (typeof claims.iat !== 'number' || typeof claims.exp !== 'number' || claims.exp - claims.iat > 3600 || claims.iat > now + 60) {
    return [400, { error: 'invalid_grant', error_description: 'Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.' }];
  }
  const allowed = new Set(['iss', 'aud', 'iat', 'exp', 'scope', 'target_audience', 'sub']);
  for (const k of Object.keys(claims)) if (!allowed.has(k)) entry.violations.push(`unexpected assertion claim ${k}`);
  if (claims.target_audience !== undefined) {
    if (claims.scope !== undefined) entry.violations.push('scope and target_audience together');
    const idToken = await new SignJWT({ azp: SA_EMAIL, email: SA_EMAIL, email_verified: true, sub: '1234567890' })
      .setProtectedHeader({ alg: 'ES256', kid: 'google-test', typ: 'JWT' })
      .setIssuer('https://accounts.google.com')
      .setAudience(claims.target_audience)
      .setIssuedAt(now)
      .setExpirationTime(now + 3600)
      .sign(CLUSTER_PRIVATE);
    entry.issued_id_token_aud = claims.target_audience;
    entry.issued = idToken;
    return [200, { id_token: idToken }];
  }
  if (claims.scope === undefined) return [400, { error: 'invalid_scope', error_description: 'Invalid OAuth scope or ID token audience provided.' }];
  for (const s of claims.scope.split(' ')) if (s !== GOOGLE_SCOPE) return [400, { error: 'invalid_scope', error_description: 'Invalid OAuth scope or ID token audience provided.' }];
  return [200, { access_token: `ya29.c.${crypto.randomBytes(24).toString('base64url')}`, expires_in: 3599, token_type: 'Bearer' }];
}

// Google STS (RFC 8693): POST /v1/token, no client authentication; the form carries
// grant_type, audience (the workload identity pool provider), scope,
// requested_token_type, subject_token_type and subject_token.
async function sts({ form, headers, entry }) {
  const TE = 'urn:ietf:params:oauth:grant-type:token-exchange';
  const AT = 'urn:ietf:params:oauth:token-type:access_token';
  entry.violations.push(...fields(form, { grant_type: TE, audience: null, scope: null, requested_token_type: AT, subject_token_type: null, subject_token: null }));
  if (headers.authorization !== undefined) entry.violations.push('Authorization header sent to STS');
  if (form.grant_type !== TE) return [400, { error: 'unsupported_grant_type', error_description: `Invalid value for "grant_type".` }];
  if (form.audience !== STS_AUDIENCE) return [400, { error: 'invalid_request', error_description: `Invalid value for "audience". This value should be the full resource name of the Identity Provider. See https://cloud.google.com/iam/docs/reference/sts/rest/v1/TopLevel/token for the list of possible formats.` }];
  if (!['urn:ietf:params:oauth:token-type:jwt', 'urn:ietf:params:oauth:token-type:id_token'].includes(form.subject_token_type)) return [400, { error: 'invalid_request', error_description: `Invalid value for "subject_token_type".` }];
  try {
    const { payload } = await jwtVerify(form.subject_token ?? '', CLUSTER_PUBLIC, { algorithms: ['ES256'], clockTolerance: 5 });
    entry.subject = payload;
    if (payload.aud !== STS_SUBJECT_AUD) return [400, { error: 'invalid_grant', error_description: `The audience in ID Token [${payload.aud}] does not match the expected audience ${STS_SUBJECT_AUD}.` }];
  } catch (err) {
    if (err instanceof joseErrors.JWTExpired) return [400, { error: 'invalid_grant', error_description: 'ID Token issued at 0 is stale to sign-in.' }];
    return [400, { error: 'invalid_grant', error_description: 'Invalid JWT signature.' }];
  }
  return [200, { access_token: `ya29.d.${crypto.randomBytes(24).toString('base64url')}`, issued_token_type: AT, token_type: 'Bearer', expires_in: 3600 }];
}

// Keycloak: realm endpoints under /realms/{realm}; client_secret_basic or post;
// token exchange (standard, v2) for a confidential client with a subject token it
// issued; errors 401 unauthorized_client / 400 invalid_request.
async function keycloak({ form, headers, realm, entry }) {
  if (realm !== 'tollgate') return [404, { error: 'Realm does not exist' }];
  const b = basic(headers);
  let id;
  let secret;
  if (b) {
    ({ id, secret } = b);
    if (form.client_secret !== undefined) entry.violations.push('client_secret with Basic');
  } else {
    id = form.client_id;
    secret = form.client_secret;
  }
  const auth = b ? [] : ['client_id', 'client_secret'];
  if (id !== 'kc-egress' || secret !== 'kc-secret') return [401, { error: 'unauthorized_client', error_description: 'Invalid client or Invalid client credentials' }];
  entry.client_id = id;
  const base = { access_token: null, expires_in: 300, refresh_expires_in: 0, token_type: 'Bearer', 'not-before-policy': 0, scope: 'profile email' };
  if (form.grant_type === 'client_credentials') {
    entry.violations.push(...fields(form, { grant_type: 'client_credentials' }, ['scope', ...auth]));
    const t = newToken('kc');
    state.keycloakTokens.add(t);
    return [200, { ...base, access_token: t }];
  }
  if (form.grant_type === 'urn:ietf:params:oauth:grant-type:token-exchange') {
    entry.violations.push(...fields(form, { grant_type: null, subject_token: null, subject_token_type: 'urn:ietf:params:oauth:token-type:access_token' }, ['audience', 'requested_token_type', 'scope', ...auth]));
    if (!state.keycloakTokens.has(form.subject_token)) return [400, { error: 'invalid_token', error_description: 'Invalid token' }];
    if (form.audience !== undefined && form.audience !== 'billing-api') return [400, { error: 'invalid_client', error_description: 'Audience not found' }];
    const t = newToken('kc-exchanged');
    return [200, { ...base, access_token: t, issued_token_type: 'urn:ietf:params:oauth:token-type:access_token' }];
  }
  return [400, { error: 'unsupported_grant_type', error_description: 'Unsupported grant_type' }];
}

function keycloakDiscovery(base, realm) {
  const issuer = `${base}/keycloak/realms/${realm}`;
  const mode = state.discovery.keycloak;
  if (realm !== 'tollgate') return [404, { error: 'Realm does not exist' }];
  if (mode === 'down') return [503, { error: 'unknown_error' }];
  return [200, {
    issuer: mode === 'wrong_issuer' ? `${base}/keycloak/realms/other` : issuer,
    authorization_endpoint: `${issuer}/protocol/openid-connect/auth`,
    token_endpoint: `${issuer}/protocol/openid-connect/token`,
    jwks_uri: `${issuer}/protocol/openid-connect/certs`,
    grant_types_supported: ['authorization_code', 'implicit', 'refresh_token', 'password', 'client_credentials', 'urn:openid:params:grant-type:ciba', 'urn:ietf:params:oauth:grant-type:device_code', 'urn:ietf:params:oauth:grant-type:token-exchange'],
    token_endpoint_auth_methods_supported: ['private_key_jwt', 'client_secret_basic', 'client_secret_post', 'tls_client_auth', 'client_secret_jwt'],
    token_endpoint_auth_signing_alg_values_supported: ['PS384', 'RS384', 'EdDSA', 'ES384', 'HS256', 'HS512', 'ES256', 'RS256', 'HS384', 'ES512', 'PS256', 'PS512', 'RS512'],
  }];
}

// ---------------------------------------------------------------- routing
const TOKEN_ROUTES = [
  [/^\/auth0\/oauth\/token$/, (m, c) => auth0(c)],
  [/^\/okta\/oauth2\/default\/v1\/token$/, (m, c) => okta(c)],
  [/^\/entra\/([^/]+)\/oauth2\/v2\.0\/token$/, (m, c) => entra({ ...c, tenant: m[1] })],
  [/^\/cognito\/oauth2\/token$/, (m, c) => cognito(c)],
  [/^\/google\/token$/, (m, c) => google(c)],
  [/^\/sts\/v1\/token$/, (m, c) => sts(c)],
  [/^\/keycloak\/realms\/([^/]+)\/protocol\/openid-connect\/token$/, (m, c) => keycloak({ ...c, realm: m[1] })],
];

function redactForm(form) {
  const out = {};
  for (const [k, v] of Object.entries(form)) {
    out[k] = ['client_secret', 'client_assertion', 'assertion', 'subject_token'].includes(k) ? `<${v.length} chars>` : v;
  }
  return out;
}

async function handle(req, res, base) {
  const url = new URL(req.url, base);
  const p = url.pathname;
  if (p.startsWith('/_test/')) return testEndpoint(req, res, p, base);
  if (req.method === 'GET' && p === '/okta/oauth2/default/.well-known/openid-configuration') {
    const [s, b] = oktaDiscovery(base);
    return send(res, s, b);
  }
  const kc = p.match(/^\/keycloak\/realms\/([^/]+)\/\.well-known\/openid-configuration$/);
  if (req.method === 'GET' && kc) {
    const [s, b] = keycloakDiscovery(base, kc[1]);
    return send(res, s, b);
  }
  const route = TOKEN_ROUTES.find(([re]) => re.test(p));
  if (!route) return send(res, 404, { error: 'not_found', error_description: `no such endpoint ${req.method} ${p}` });
  const body = await readBody(req);
  const ct = req.headers['content-type'];
  const isForm = typeof ct === 'string' && ct.split(';')[0].trim() === FORM;
  const form = isForm ? Object.fromEntries(new URLSearchParams(body)) : {};
  state.seq += 1;
  const b = basic(req.headers);
  const entry = {
    seq: state.seq,
    provider: p.split('/')[1],
    method: req.method,
    path: p,
    content_type: ct ?? null,
    accept: req.headers.accept ?? null,
    authorization: b ? (b.rawId !== undefined ? { scheme: 'Basic', client_id: b.id, raw_client_id: b.rawId } : { scheme: b.scheme }) : null,
    form: redactForm(form),
    field_names: Object.keys(form),
    violations: [],
  };
  state.requests.push(entry);
  if (req.method !== 'POST') entry.violations.push(`method ${req.method}`);
  if (!isForm) entry.violations.push(`content-type ${ct}`);
  const [status, answer] = req.method !== 'POST' || !isForm
    ? [400, { error: 'invalid_request', error_description: 'POST application/x-www-form-urlencoded expected' }]
    : await route[1](p.match(route[0]), { form, headers: req.headers, base, entry });
  entry.status = status;
  if (answer.error) entry.error = answer.error;
  if (answer.error_description) entry.error_description = answer.error_description;
  if (answer.access_token) entry.issued = answer.access_token;
  if (args.verbose) process.stderr.write(`providers: #${entry.seq} ${entry.path} -> ${status} ${entry.error ?? ''} ${entry.violations.join('; ')}\n`);
  send(res, status, answer, status === 401 && b ? { 'www-authenticate': 'Basic realm="test"' } : {});
}

async function testEndpoint(req, res, p, base) {
  const body = req.method === 'POST' ? await readBody(req) : '';
  const b = body ? JSON.parse(body) : {};
  switch (`${req.method} ${p}`) {
    case 'GET /_test/requests':
      return send(res, 200, { requests: state.requests });
    case 'POST /_test/reset':
      state = initial();
      return send(res, 200, { ok: true });
    case 'POST /_test/config':
      if (b.entra_secret !== undefined) state.entraSecret = String(b.entra_secret);
      if (b.discovery) Object.assign(state.discovery, b.discovery);
      return send(res, 200, { ok: true, discovery: state.discovery });
    case 'POST /_test/mint': {
      // A projected service account token, signed by the cluster key.
      const now = Math.floor(Date.now() / 1000);
      const jwt = await new SignJWT({ kubernetes: { namespace: 'billing', serviceaccount: { name: 'egress' } } })
        .setProtectedHeader({ alg: 'ES256', typ: 'JWT' })
        .setIssuer(b.iss ?? FEDERATED.iss)
        .setSubject(b.sub ?? FEDERATED.sub)
        .setAudience(b.aud ?? FEDERATED.aud)
        .setIssuedAt(now)
        .setExpirationTime(now + (b.ttl ?? 3600))
        .setJti(crypto.randomUUID())
        .sign(CLUSTER_PRIVATE);
      return send(res, 200, { token: jwt });
    }
    case 'POST /_test/keycloak_token': {
      // An access token of the realm, as another client would have got it.
      const t = newToken('kc-subject');
      state.keycloakTokens.add(t);
      return send(res, 200, { token: t });
    }
    default:
      return send(res, 404, { error: 'not_found', error_description: `no test endpoint ${req.method} ${p} (base ${base})` });
  }
}

// ---------------------------------------------------------------- start
const server = http.createServer();
server.on('error', (err) => { process.stderr.write(`providers: ${err.message}\n`); process.exit(2); });
server.listen(Number(args.port), HOST, () => {
  const { port } = server.address();
  const base = `http://${HOST}:${port}`;
  server.on('request', (req, res) => {
    handle(req, res, base).catch((err) => {
      process.stderr.write(`providers: ${err?.stack || err}\n`);
      if (!res.headersSent) send(res, 500, { error: 'server_error', error_description: String(err?.message ?? err) });
    });
  });
  process.stdout.write(`${JSON.stringify({ ready: true, port, base })}\n`);
});

function shutdown() {
  server.close();
  server.closeAllConnections?.();
  process.exit(0);
}
process.on('SIGINT', shutdown);
process.on('SIGTERM', shutdown);
if (args['exit-on-stdin-close']) {
  process.stdin.on('end', shutdown);
  process.stdin.on('close', shutdown);
  process.stdin.on('error', shutdown);
  process.stdin.resume();
}
