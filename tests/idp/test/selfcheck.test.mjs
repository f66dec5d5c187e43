// Self-check of the test IdP (idp.mjs) and the protected upstream (upstream.mjs).
// Run: npm test   (starts its own processes on 127.0.0.1 and kills them at the end)

import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as https from 'node:https';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';

import {
  DIR, callUpstream, certThumbprint, clientAssertion, decodeJwtPayload, dpopKey, dpopProof, getJson,
  makePki, postJson, request, sleep, startIdp, startUpstream, stop, stopAll, tokenRequest,
} from '../harness.mjs';

const CLIENTS = [
  { clientId: 'basic-client', secret: 'basic-secret', method: 'client_secret_basic' },
  { clientId: 'post-client', secret: 'post-secret', method: 'client_secret_post' },
  { clientId: 'jwt-client', method: 'private_key_jwt', keyFile: 'jwt-client-es256.pem', alg: 'ES256' },
  { clientId: 'jwt-rs-client', method: 'private_key_jwt', keyFile: 'jwt-client-rs256.pem', alg: 'RS256' },
  { clientId: 'rotating-client', secret: 'rotating-secret', method: 'client_secret_basic' },
];
const basic = CLIENTS[0];

after(stopAll);

async function token(idp, client = basic, params = { scope: 'invoices:read' }) {
  const r = await tokenRequest(idp.token_url, { ...client, params });
  assert.equal(r.status, 200, `token for ${client.clientId}: ${JSON.stringify(r.body)}`);
  return r.body;
}

const lastRequest = async (idp) => (await getJson(`${idp.base}/_test/stats`)).body.requests.at(-1);

describe('jwt IdP and upstream', () => {
  let idp;
  let up;

  before(async () => {
    idp = await startIdp();
    up = await startUpstream(idp.issuer);
  });

  it('prints the ready line and the real token endpoint', async () => {
    const { port } = idp;
    assert.ok(port > 0);
    assert.deepEqual(idp.ready, {
      ready: true, port, issuer: `http://127.0.0.1:${port}`, token_url: `http://127.0.0.1:${port}/token`,
    });
    const disc = await getJson(`${idp.issuer}/.well-known/openid-configuration`);
    assert.equal(disc.status, 200);
    assert.equal(disc.body.token_endpoint, idp.token_url);
    assert.equal(disc.body.jwks_uri, `${idp.issuer}/jwks`);
    assert.equal(disc.body.introspection_endpoint, `${idp.issuer}/token/introspection`);
    assert.deepEqual(up.ready, { ready: true, port: up.port });
  });

  for (const client of CLIENTS) {
    it(`${client.clientId} gets a token with ${client.method}; upstream accepts it; stats show the method`, async () => {
      await postJson(`${idp.base}/_test/reset`);
      const t = await token(idp, client, { scope: 'invoices:read invoices:write', resource: 'https://api.test' });
      assert.equal(t.token_type, 'Bearer');
      assert.equal(t.expires_in, 300);
      assert.equal(t.scope, 'invoices:read invoices:write');
      const claims = decodeJwtPayload(t.access_token);
      assert.equal(claims.client_id, client.clientId);
      assert.equal(claims.aud, 'https://api.test');
      assert.equal(claims.iss, idp.issuer);

      const r = await callUpstream(up.base, t.access_token, { path: '/v1/invoices?x=1', method: 'POST', body: 'hello' });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.equal(r.body.token.client_id, client.clientId);
      assert.equal(r.body.token.sub, client.clientId);
      assert.equal(r.body.token.scope, 'invoices:read invoices:write');
      assert.equal(r.body.token.jti, claims.jti);
      assert.equal(r.body.method, 'POST');
      assert.equal(r.body.path, '/v1/invoices');
      assert.equal(r.body.query, 'x=1');
      assert.equal(r.body.body_length, 5);
      assert.equal(r.body.body_sha256, crypto.createHash('sha256').update('hello').digest('hex'));
      assert.equal(r.body.headers.authorization, `Bearer ${t.access_token}`);
      assert.ok(r.body.expires_in_seconds > 290 && r.body.expires_in_seconds <= 300);

      const stats = (await getJson(`${idp.base}/_test/stats`)).body;
      assert.equal(stats.token_requests, 1);
      const e = stats.requests[0];
      assert.equal(e.client_id, client.clientId);
      assert.equal(e.auth_method, client.method);
      assert.equal(e.status, 200);
      assert.equal(e.grant_type, 'client_credentials');
      assert.equal(e.scope, 'invoices:read invoices:write');
      assert.equal(e.resource, 'https://api.test');
      assert.equal(e.issued.jti, claims.jti);
      assert.equal(e.authorization_header_present, client.method === 'client_secret_basic');
      assert.equal(e.client_secret_present, client.method === 'client_secret_post');
      assert.equal(e.client_assertion_present, client.method === 'private_key_jwt');
      if (client.method === 'private_key_jwt') {
        assert.equal(e.client_assertion.alg, client.alg);
        assert.equal(e.client_assertion.aud, idp.token_url);
      }
      const text = JSON.stringify(stats);
      if (client.secret) assert.ok(!text.includes(client.secret), 'stats must not contain the secret');
      assert.ok(!text.includes(t.access_token), 'stats must not contain the access token');
    });
  }

  it('rejects a wrong secret with invalid_client', async () => {
    const r = await tokenRequest(idp.token_url, { ...basic, secret: 'nope' });
    assert.equal(r.status, 401);
    assert.equal(r.body.error, 'invalid_client');
  });

  it('is strict about the registered auth method by default, lenient on request', async () => {
    const r = await tokenRequest(idp.token_url, { ...basic, method: 'client_secret_post' });
    assert.equal(r.status, 401);
    assert.equal(r.body.error, 'invalid_client');
    const e = await lastRequest(idp);
    assert.equal(e.auth_method, 'client_secret_post');
    assert.equal(e.strict_auth_rejected, true);

    await postJson(`${idp.base}/_test/config`, { strict_auth: false });
    const ok = await tokenRequest(idp.token_url, { ...basic, method: 'client_secret_post' });
    assert.equal(ok.status, 200, 'oidc-provider itself accepts post for a basic client');
    await postJson(`${idp.base}/_test/reset`);
    const again = await tokenRequest(idp.token_url, { ...basic, method: 'client_secret_post' });
    assert.equal(again.status, 401, 'reset restores strict mode');
  });

  it('issues JWTs without resource (default resource), with resource, and with audience', async () => {
    const none = decodeJwtPayload((await token(idp, basic, {})).access_token);
    assert.equal(none.aud, 'https://api.test');
    assert.equal(none.scope, undefined);
    const res = decodeJwtPayload((await token(idp, basic, { resource: 'https://other.test/x' })).access_token);
    assert.equal(res.aud, 'https://other.test/x');
    const aud = decodeJwtPayload((await token(idp, basic, { audience: 'https://aud.test', scope: 'other:read' })).access_token);
    assert.equal(aud.aud, 'https://aud.test');
    assert.equal(aud.scope, 'other:read');
    const e = await lastRequest(idp);
    assert.equal(e.audience, 'https://aud.test');
    assert.equal(e.resource, undefined, 'stats show the request as sent');
  });

  it('silently drops unknown scopes', async () => {
    const t = await token(idp, basic, { scope: 'invoices:read bogus:scope' });
    assert.equal(t.scope, 'invoices:read');
  });

  it('private_key_jwt: an assertion is single-use and its aud must match exactly', async () => {
    const c = CLIENTS[2];
    const assertion = await clientAssertion({ ...c, aud: idp.token_url });
    const send = (a) => fetch(idp.token_url, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({
        grant_type: 'client_credentials',
        client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
        client_assertion: a,
      }),
    });
    assert.equal((await send(assertion)).status, 200);
    const replay = await send(assertion);
    assert.equal(replay.status, 401);
    assert.equal((await replay.json()).error, 'invalid_client');
    const slash = await tokenRequest(idp.token_url, { ...c, aud: `${idp.token_url}/` });
    assert.equal(slash.status, 401);
    const iss = await tokenRequest(idp.token_url, { ...c, aud: idp.issuer });
    assert.equal(iss.status, 200, 'the issuer is accepted as aud too');
  });

  it('upstream rejects garbage, missing and non-Bearer credentials with 401', async () => {
    const g = await callUpstream(up.base, 'garbage');
    assert.equal(g.status, 401);
    assert.match(g.headers.get('www-authenticate'), /^Bearer .*error="invalid_token"/);
    const forged = await callUpstream(up.base, 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln');
    assert.equal(forged.status, 401);
    assert.match(forged.headers.get('www-authenticate'), /error="invalid_token"/);
    const none = await callUpstream(up.base, undefined);
    assert.equal(none.status, 401);
    assert.equal(none.headers.get('www-authenticate'), 'Bearer realm="tollgate-test-upstream"');
    const b = await callUpstream(up.base, undefined, { headers: { authorization: 'Basic eDp5' } });
    assert.equal(b.status, 401);
  });

  it('upstream checks the signature and the issuer', async () => {
    const t = (await token(idp)).access_token;
    const [h, p, sig] = t.split('.');
    const claims = decodeJwtPayload(t);
    const tampered = Buffer.from(JSON.stringify({ ...claims, scope: 'invoices:write' })).toString('base64url');
    const r = await callUpstream(up.base, `${h}.${tampered}.${sig}`);
    assert.equal(r.status, 401);
    assert.match(r.headers.get('www-authenticate'), /error="invalid_token"/);
    assert.notEqual(p, tampered);

    // Another instance with a freshly generated key (and so another issuer too).
    const other = await startIdp(['--generate-key']);
    try {
      const o = await token(other);
      assert.notEqual(JSON.parse(Buffer.from(o.access_token.split('.')[0], 'base64url')).kid,
        JSON.parse(Buffer.from(h, 'base64url')).kid);
      assert.equal((await callUpstream(up.base, o.access_token)).status, 401);
    } finally {
      await stop(other);
    }
  });

  it('upstream --audience rejects tokens for another resource', async () => {
    const strict = await startUpstream(idp.issuer, ['--audience', 'https://api.test']);
    try {
      const ok = (await token(idp, basic, { resource: 'https://api.test' })).access_token;
      assert.equal((await callUpstream(strict.base, ok)).status, 200);
      const other = (await token(idp, basic, { resource: 'https://elsewhere.test' })).access_token;
      assert.equal((await callUpstream(strict.base, other)).status, 401);
    } finally {
      await stop(strict);
    }
  });

  it('fault injection: 503 xN, 401 invalid_client, until cleared, delay, connection close', async () => {
    await postJson(`${idp.base}/_test/reset`);
    await postJson(`${idp.base}/_test/fault`, { status: 503, count: 2 });
    const codes = [];
    for (let i = 0; i < 3; i += 1) codes.push((await tokenRequest(idp.token_url, basic)).status);
    assert.deepEqual(codes, [503, 503, 200]);

    await postJson(`${idp.base}/_test/fault`, { status: 401, error: 'invalid_client', count: 1 });
    const f = await tokenRequest(idp.token_url, basic);
    assert.equal(f.status, 401);
    assert.equal(f.body.error, 'invalid_client');
    assert.equal((await tokenRequest(idp.token_url, basic)).status, 200);

    await postJson(`${idp.base}/_test/fault`, { status: 429, count: -1, retry_after: 1 });
    for (let i = 0; i < 3; i += 1) {
      const r = await tokenRequest(idp.token_url, basic);
      assert.equal(r.status, 429);
      assert.equal(r.headers.get('retry-after'), '1');
    }
    await postJson(`${idp.base}/_test/fault`, { clear: true });
    assert.equal((await tokenRequest(idp.token_url, basic)).status, 200);

    const stats = (await getJson(`${idp.base}/_test/stats`)).body;
    assert.equal(stats.token_requests, 9);
    assert.deepEqual(stats.requests.map((e) => e.status), [503, 503, 200, 401, 200, 429, 429, 429, 200]);
    assert.deepEqual(stats.requests.map((e) => !!e.fault), [true, true, false, true, false, true, true, true, false]);

    await postJson(`${idp.base}/_test/fault`, { delay_ms: 300 });
    const t0 = Date.now();
    const all = await Promise.all([1, 2, 3].map(() => tokenRequest(idp.token_url, basic)));
    assert.ok(Date.now() - t0 >= 290);
    assert.deepEqual(all.map((r) => r.status), [200, 200, 200]);

    await postJson(`${idp.base}/_test/fault`, { close: true, count: 1, delay_ms: 0 });
    await assert.rejects(tokenRequest(idp.token_url, basic));
    assert.equal((await tokenRequest(idp.token_url, basic)).status, 200);

    await postJson(`${idp.base}/_test/reset`);
    const s = (await getJson(`${idp.base}/_test/stats`)).body;
    assert.equal(s.token_requests, 0);
    assert.equal(s.fault, null);
    assert.equal(s.delay_ms, 0);
  });

  it('rotate changes the secret rotating-client must use', async () => {
    const rot = CLIENTS[4];
    assert.equal((await tokenRequest(idp.token_url, rot)).status, 200);
    const r = await postJson(`${idp.base}/_test/rotate`, { client_id: 'rotating-client', secret: 'new' });
    assert.equal(r.status, 200);
    const old = await tokenRequest(idp.token_url, rot);
    assert.equal(old.status, 401);
    assert.equal(old.body.error, 'invalid_client');
    assert.equal((await tokenRequest(idp.token_url, { ...rot, secret: 'new' })).status, 200);
    await postJson(`${idp.base}/_test/rotate`, { client_id: 'rotating-client', secret: 'post-now', auth_method: 'client_secret_post' });
    assert.equal((await tokenRequest(idp.token_url, { ...rot, secret: 'post-now', method: 'client_secret_post' })).status, 200);
    await postJson(`${idp.base}/_test/reset`);
    assert.equal((await tokenRequest(idp.token_url, rot)).status, 200, 'reset restores the first secret');
  });

  it('revoke rejects every token issued before it, not the ones after', async () => {
    await postJson(`${up.base}/_test/reset`);
    const a = (await token(idp)).access_token;
    const unseen = (await token(idp)).access_token;
    assert.equal((await callUpstream(up.base, a)).status, 200);
    const rv = await postJson(`${up.base}/_test/revoke`);
    assert.equal(rv.status, 200);
    const ra = await callUpstream(up.base, a);
    assert.equal(ra.status, 401);
    assert.match(ra.headers.get('www-authenticate'), /error="invalid_token"/);
    assert.equal((await callUpstream(up.base, unseen)).status, 401, 'issued before the revoke, though never presented');
    const b = (await token(idp)).access_token;
    assert.equal((await callUpstream(up.base, b)).status, 200, 'a token issued after the revoke works at once');

    await postJson(`${up.base}/_test/revoke`, { jti: decodeJwtPayload(b).jti });
    assert.equal((await callUpstream(up.base, b)).status, 401, 'revoke by jti');
    await postJson(`${up.base}/_test/reset`);
    assert.equal((await callUpstream(up.base, a)).status, 200, 'reset forgets revocations');
  });

  it('always401 and insufficient_scope', async () => {
    await postJson(`${up.base}/_test/reset`);
    const t = (await token(idp)).access_token;
    await postJson(`${up.base}/_test/always401`, { on: true });
    for (let i = 0; i < 2; i += 1) {
      const r = await callUpstream(up.base, t);
      assert.equal(r.status, 401);
      assert.match(r.headers.get('www-authenticate'), /error="invalid_token"/);
    }
    await postJson(`${up.base}/_test/always401`, { on: false });
    assert.equal((await callUpstream(up.base, t)).status, 200);

    await postJson(`${up.base}/_test/always401`, { on: true, count: 1 });
    assert.equal((await callUpstream(up.base, t)).status, 401);
    assert.equal((await callUpstream(up.base, t)).status, 200);

    await postJson(`${up.base}/_test/insufficient_scope`, { on: true });
    const s = await callUpstream(up.base, t);
    assert.equal(s.status, 401);
    assert.match(s.headers.get('www-authenticate'), /^Bearer .*error="insufficient_scope"/);
    await postJson(`${up.base}/_test/insufficient_scope`, { on: false });
    assert.equal((await callUpstream(up.base, t)).status, 200);

    await postJson(`${up.base}/_test/fail`, { status: 403, count: 1 });
    assert.equal((await callUpstream(up.base, t)).status, 403);
    assert.equal((await callUpstream(up.base, t)).status, 200);
  });

  it('upstream records every request, including the rejected ones', async () => {
    await postJson(`${up.base}/_test/reset`);
    const t = (await token(idp)).access_token;
    const big = crypto.randomBytes(100 * 1024);
    await callUpstream(up.base, t, { path: '/a?q=1', method: 'PUT', body: big, headers: { 'x-dup': 'one' } });
    await callUpstream(up.base, 'bad', { path: '/b' });
    const { body } = await getJson(`${up.base}/_test/requests`);
    assert.equal(body.count, 2);
    const [a, b] = body.requests;
    assert.equal(a.method, 'PUT');
    assert.equal(a.path, '/a');
    assert.equal(a.query, 'q=1');
    assert.equal(a.status, 200);
    assert.equal(a.headers['x-dup'], 'one');
    assert.equal(a.body_length, big.length);
    assert.equal(a.body_sha256, crypto.createHash('sha256').update(big).digest('hex'));
    assert.equal(a.token.client_id, 'basic-client');
    assert.equal(b.status, 401);
    assert.match(b.www_authenticate, /invalid_token/);
    const since = (await getJson(`${up.base}/_test/requests?since=1`)).body;
    assert.deepEqual(since.requests.map((r) => r.seq), [2]);
  });

  it('keeps stdout to the single ready line', () => {
    assert.equal(idp.stdoutLines.length, 1, idp.stdoutLines.join('\n'));
    assert.equal(up.stdoutLines.length, 1, up.stdoutLines.join('\n'));
  });
});

describe('--ttl 2: expiry', () => {
  it('a token is accepted, then rejected once expired', async () => {
    const idp = await startIdp(['--ttl', '2']);
    const up = await startUpstream(idp.issuer);
    const t = await token(idp);
    assert.equal(t.expires_in, 2);
    const claims = decodeJwtPayload(t.access_token);
    assert.equal(claims.exp - claims.iat, 2);
    assert.equal((await callUpstream(up.base, t.access_token)).status, 200);
    await sleep(Math.max(0, claims.exp * 1000 - Date.now()) + 100);
    const r = await callUpstream(up.base, t.access_token);
    assert.equal(r.status, 401);
    assert.match(r.headers.get('www-authenticate'), /error="invalid_token", error_description="token expired"/);
    await stop(up);
    await stop(idp);
  });
});

describe('--format opaque: introspection', () => {
  it('opaque tokens are validated through introspection, and expire', async () => {
    const idp = await startIdp(['--format', 'opaque', '--ttl', '2']);
    const up = await startUpstream(idp.issuer);
    const t = await token(idp, CLIENTS[1], { scope: 'other:read', resource: 'https://api.test' });
    assert.ok(!t.access_token.includes('.'), 'opaque');
    const r = await callUpstream(up.base, t.access_token);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.token.format, 'opaque');
    assert.equal(r.body.token.client_id, 'post-client');
    assert.equal(r.body.token.scope, 'other:read');
    assert.equal(r.body.token.aud, 'https://api.test');
    assert.equal((await callUpstream(up.base, 'not-a-token')).status, 401);
    const stats = (await getJson(`${idp.base}/_test/stats`)).body;
    assert.ok(stats.introspection_requests >= 2);

    // Revoked at the IdP (RFC 7009) -> introspection says inactive -> 401.
    const t2 = await token(idp, CLIENTS[1], { scope: 'other:read' });
    assert.equal((await callUpstream(up.base, t2.access_token)).status, 200);
    const rv = await fetch(`${idp.issuer}/token/revocation`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ token: t2.access_token, client_id: 'post-client', client_secret: 'post-secret' }),
    });
    assert.equal(rv.status, 200);
    assert.equal((await callUpstream(up.base, t2.access_token)).status, 401);

    const exp = r.body.token.exp;
    await sleep(Math.max(0, exp * 1000 - Date.now()) + 100);
    assert.equal((await callUpstream(up.base, t.access_token)).status, 401);
    await stop(up);
    await stop(idp);
  });
});

describe('upstream over TLS', () => {
  let dir;
  let cert;
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tg-idp-tls-'));
    try {
      execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
        '-keyout', path.join(dir, 'key.pem'), '-out', path.join(dir, 'cert.pem'), '-days', '1',
        '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost'], { stdio: 'ignore' });
      cert = fs.readFileSync(path.join(dir, 'cert.pem'));
    } catch {
      cert = null;
    }
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('serves https with --tls-cert/--tls-key', async (t) => {
    if (!cert) {
      t.skip('openssl not available');
      return;
    }
    const idp = await startIdp();
    const up = await startUpstream(idp.issuer, ['--tls-cert', path.join(dir, 'cert.pem'), '--tls-key', path.join(dir, 'key.pem')]);
    const tok = (await token(idp)).access_token;
    const res = await new Promise((resolve, reject) => {
      const req = https.request(`${up.base}/tls`, { ca: cert, headers: { authorization: `Bearer ${tok}` } }, (resp) => {
        let d = '';
        resp.on('data', (c) => { d += c; });
        resp.on('end', () => resolve({ status: resp.statusCode, body: JSON.parse(d) }));
      });
      req.on('error', reject);
      req.end();
    });
    assert.equal(res.status, 200);
    assert.equal(res.body.tls, true);
    await stop(up);
    await stop(idp);
  });
});

describe('--exit-on-stdin-close', () => {
  for (const script of ['idp.mjs', 'upstream.mjs']) {
    it(`${script} exits when its stdin closes`, async () => {
      const extra = script === 'upstream.mjs' ? ['--issuer', 'http://127.0.0.1:9'] : [];
      const child = spawn(process.execPath, [path.join(DIR, script), '--port', '0', ...extra, '--exit-on-stdin-close'], {
        stdio: ['pipe', 'pipe', 'ignore'],
      });
      try {
        await new Promise((resolve, reject) => {
          child.stdout.once('data', resolve);
          child.once('exit', () => reject(new Error('exited before ready')));
        });
        const exited = new Promise((r) => { child.once('exit', (code) => r(code)); });
        child.stdin.end();
        const code = await Promise.race([exited, sleep(5000).then(() => 'timeout')]);
        assert.equal(code, 0);
      } finally {
        if (child.exitCode === null) child.kill('SIGKILL');
      }
    });
  }
});

describe('sender-constrained tokens: mutual TLS (RFC 8705) and DPoP (RFC 9449)', () => {
  let dir;
  let pki;
  let idp;
  let up;
  const ca = () => ({ ca: pki.caPem });
  const withCert = (name) => ({ ca: pki.caPem, cert: pki[name].cert, key: pki[name].key });
  const form = (fields) => new URLSearchParams({ grant_type: 'client_credentials', ...fields });
  const basicAuth = (id, secret) => `Basic ${Buffer.from(`${id}:${secret}`).toString('base64')}`;
  const stats = async () => (await request(`${idp.base}/_test/stats`, { tls: ca() })).body;
  const ctl = (base, p, body) => request(`${base}${p}`, { method: 'POST', body: body ?? {}, tls: ca() });

  // A token for `clientId` over a connection that presents certificate `certName`.
  const mtlsToken = (clientId, certName, fields = {}) => request(idp.token_url, {
    method: 'POST', body: form({ client_id: clientId, ...fields }), tls: certName ? withCert(certName) : ca(),
  });
  // A DPoP token request (client_secret_basic) with a proof made by `key`.
  const dpopToken = async (key, { clientId = 'dpop-client', secret = 'dpop-secret', nonce, proof } = {}) => request(idp.token_url, {
    method: 'POST',
    body: form({ scope: 'invoices:read' }),
    headers: {
      authorization: basicAuth(clientId, secret),
      ...(key ? { dpop: proof ?? await dpopProof(key, { htm: 'POST', htu: idp.token_url, nonce }) } : {}),
    },
    tls: ca(),
  });

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tg-idp-sc-'));
    pki = makePki(dir);
    idp = await startIdp([
      '--tls-cert', pki.server.cert, '--tls-key', pki.server.key, '--tls-ca', pki.ca.cert,
      '--self-signed-client-cert', pki['self-signed'].cert,
    ]);
    up = await startUpstream(idp.issuer, [
      '--tls-cert', pki.server.cert, '--tls-key', pki.server.key, '--tls-ca', pki.ca.cert, '--idp-ca', pki.ca.cert,
    ]);
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('the IdP serves https (test endpoints too) and advertises mutual TLS and DPoP', async () => {
    assert.equal(idp.issuer, `https://127.0.0.1:${idp.port}`);
    assert.equal(idp.token_url, `https://127.0.0.1:${idp.port}/token`);
    const disc = await request(`${idp.issuer}/.well-known/openid-configuration`, { tls: ca() });
    assert.equal(disc.status, 200);
    assert.equal(disc.body.token_endpoint, idp.token_url);
    for (const m of ['tls_client_auth', 'self_signed_tls_client_auth', 'client_secret_basic']) {
      assert.ok(disc.body.token_endpoint_auth_methods_supported.includes(m), m);
    }
    assert.equal(disc.body.tls_client_certificate_bound_access_tokens, true);
    assert.ok(disc.body.dpop_signing_alg_values_supported.includes('ES256'));
    const s = await stats();
    assert.equal(s.tls, true);
    assert.equal((await ctl(idp.base, '/_test/reset')).status, 200);
  });

  it('tls_client_auth: a cnf.x5t#S256-bound JWT for the CA-issued certificate, refused otherwise', async () => {
    await ctl(idp.base, '/_test/reset');
    const ok = await mtlsToken('mtls-client', 'client', { scope: 'invoices:read' });
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    assert.equal(ok.body.token_type, 'Bearer');
    const claims = decodeJwtPayload(ok.body.access_token);
    assert.equal(claims.client_id, 'mtls-client');
    assert.deepEqual(claims.cnf, { 'x5t#S256': certThumbprint(pki.client.cert) });

    for (const [cert, detail] of [
      [undefined, 'client certificate was not provided'],
      ['other', 'client certificate was not verified'],
      ['self-signed', 'client certificate was not verified'],
    ]) {
      const r = await mtlsToken('mtls-client', cert);
      assert.equal(r.status, 401, `${cert}: ${JSON.stringify(r.body)}`);
      assert.deepEqual(r.body, { error: 'invalid_client', error_description: 'client authentication failed' });
      const e = (await stats()).requests.at(-1);
      assert.equal(e.error_detail, detail);
    }
    const s = await stats();
    const e = s.requests[0];
    assert.equal(e.auth_method, 'tls_client_auth');
    assert.equal(e.client_cert.present, true);
    assert.equal(e.client_cert.authorized, true);
    assert.equal(e.client_cert.x5t_s256, certThumbprint(pki.client.cert));
    assert.equal(e.client_secret_present, false);
    assert.equal(e.fields.client_id, 'mtls-client');
    assert.deepEqual(e.issued.cnf, { 'x5t#S256': certThumbprint(pki.client.cert) });
    assert.equal(s.requests[1].client_cert.present, false);
    assert.equal(s.by_client_detail['mtls-client'].requests, 4);
    assert.equal(s.by_client_detail['mtls-client'].with_client_cert, 3);
  });

  it('self_signed_tls_client_auth: a bound JWT for the registered certificate only', async () => {
    await ctl(idp.base, '/_test/reset');
    const ok = await mtlsToken('self-signed-client', 'self-signed');
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    assert.deepEqual(decodeJwtPayload(ok.body.access_token).cnf, { 'x5t#S256': certThumbprint(pki['self-signed'].cert) });
    const none = await mtlsToken('self-signed-client', undefined);
    assert.equal(none.status, 401);
    assert.equal(none.body.error, 'invalid_client');
    const wrong = await mtlsToken('self-signed-client', 'client');
    assert.equal(wrong.status, 401);
    const s = await stats();
    assert.deepEqual(s.requests.map((r) => r.error_detail), [undefined, 'client certificate was not provided', 'unregistered client certificate provided']);
    assert.equal(s.requests[0].auth_method, 'self_signed_tls_client_auth');
  });

  it('a secret-based client presenting a certificate gets an unbound token', async () => {
    const r = await request(idp.token_url, {
      method: 'POST', body: form({}), headers: { authorization: basicAuth('basic-client', 'basic-secret') }, tls: withCert('client'),
    });
    assert.equal(r.status, 200);
    assert.equal(decodeJwtPayload(r.body.access_token).cnf, undefined);
  });

  it('DPoP: a cnf.jkt-bound JWT of token_type DPoP; dpop-client needs a proof; a bad proof is refused', async () => {
    await ctl(idp.base, '/_test/reset');
    const key = await dpopKey();
    const ok = await dpopToken(key);
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    assert.equal(ok.body.token_type, 'DPoP');
    assert.deepEqual(decodeJwtPayload(ok.body.access_token).cnf, { jkt: key.jkt });
    // Without a nonce demanded, oidc-provider still offers one.
    assert.match(ok.headers.get('dpop-nonce'), /^[A-Za-z0-9_-]{43}$/);

    const without = await dpopToken(undefined);
    assert.equal(without.status, 400);
    assert.deepEqual(without.body, { error: 'invalid_grant', error_description: 'grant request is invalid' });

    const other = await dpopToken(key, { clientId: 'basic-client', secret: 'basic-secret' });
    assert.equal(other.status, 200, 'any client may bind its token with DPoP');
    assert.equal(other.body.token_type, 'DPoP');
    assert.equal(decodeJwtPayload(other.body.access_token).cnf.jkt, key.jkt);

    const wrongHtu = await dpopToken(key, { proof: await dpopProof(key, { htm: 'POST', htu: `${idp.issuer}/other` }) });
    assert.equal(wrongHtu.status, 400);
    assert.deepEqual(wrongHtu.body, { error: 'invalid_dpop_proof', error_description: 'DPoP proof htu mismatch' });
    const p = await dpopProof(key, { htm: 'POST', htu: idp.token_url });
    assert.equal((await dpopToken(key, { proof: p })).status, 200);
    const replay = await dpopToken(key, { proof: p });
    assert.equal(replay.status, 400);
    assert.equal(replay.body.error, 'invalid_grant');

    const s = await stats();
    assert.deepEqual(s.requests.map((r) => r.dpop_proof_present), [true, false, true, true, true, true]);
    assert.equal(s.requests[0].dpop_proof.htu, idp.token_url);
    assert.equal(s.requests[0].dpop_proof.jwk_thumbprint, key.jkt);
    assert.equal(s.requests[0].issued.token_type, 'DPoP');
    assert.equal(s.requests[1].error_detail, 'DPoP proof JWT not provided');
    assert.equal(s.requests[5].error_detail, 'DPoP proof JWT Replay detected');
    assert.equal(s.by_client_detail['dpop-client'].with_dpop_proof, 4);
  });

  it('DPoP nonce at the token endpoint: 400 use_dpop_nonce with DPoP-Nonce, then the nonce works', async () => {
    await ctl(idp.base, '/_test/reset');
    const c = await ctl(idp.base, '/_test/config', { dpop_require_nonce: true });
    assert.equal(c.body.dpop_require_nonce, true);
    const key = await dpopKey();
    const first = await dpopToken(key);
    assert.equal(first.status, 400);
    assert.deepEqual(first.body, { error: 'use_dpop_nonce', error_description: 'nonce is required in the DPoP proof' });
    const nonce = first.headers.get('dpop-nonce');
    assert.match(nonce, /^[A-Za-z0-9_-]{43}$/);
    assert.equal(first.headers.get('www-authenticate'), null, 'the token endpoint sends no WWW-Authenticate');
    const second = await dpopToken(key, { nonce });
    assert.equal(second.status, 200, JSON.stringify(second.body));
    // (oidc-provider offers a new nonce in DPoP-Nonce whenever the proof's nonce is not
    // its newest one, which changes every 60 s: no assertion on that header here.)
    const third = await dpopToken(key, { nonce });
    assert.equal(third.status, 200, 'the remembered nonce works again');
    const bad = await dpopToken(key, { nonce: 'not-a-nonce' });
    assert.equal(bad.status, 400);
    assert.deepEqual(bad.body, { error: 'use_dpop_nonce', error_description: 'invalid nonce in DPoP proof' });
    const s = await stats();
    assert.deepEqual(s.requests.map((r) => [r.status, r.dpop_nonce_present]), [[400, false], [200, true], [200, true], [400, true]]);
    assert.equal(s.requests[0].dpop_nonce_answered, nonce);
    assert.equal(s.by_client_detail['dpop-client'].use_dpop_nonce, 2);
    await ctl(idp.base, '/_test/reset');
    assert.equal((await stats()).dpop_require_nonce, false, 'reset restores the CLI setting');
  });

  it('upstream: a certificate-bound token is accepted only with its certificate', async () => {
    await ctl(up.base, '/_test/reset');
    const t = (await mtlsToken('mtls-client', 'client')).body.access_token;
    const call = (cert, scheme = 'Bearer') => request(`${up.base}/v1/x`, { headers: { authorization: `${scheme} ${t}` }, tls: cert ? withCert(cert) : ca() });
    const ok = await call('client');
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    assert.equal(ok.body.client_cert.x5t_s256, certThumbprint(pki.client.cert));
    assert.deepEqual(ok.body.token.cnf, { 'x5t#S256': certThumbprint(pki.client.cert) });
    for (const [cert, why] of [
      [undefined, 'no TLS client certificate for a certificate-bound token'],
      ['other', 'TLS client certificate does not match cnf.x5t#S256'],
      ['self-signed', 'TLS client certificate does not match cnf.x5t#S256'],
    ]) {
      const r = await call(cert);
      assert.equal(r.status, 401, `${cert}`);
      assert.equal(r.headers.get('www-authenticate'), `Bearer realm="tollgate-test-upstream", error="invalid_token", error_description="${why}"`);
    }
    const reqs = (await request(`${up.base}/_test/requests`, { tls: ca() })).body.requests;
    assert.deepEqual(reqs.map((r) => r.cnf_error ?? null), [null, 'no TLS client certificate for a certificate-bound token',
      'TLS client certificate does not match cnf.x5t#S256', 'TLS client certificate does not match cnf.x5t#S256']);
    assert.deepEqual(reqs.map((r) => r.client_cert.present), [true, false, true, true]);

    // An unbound token is fine with or without a certificate, unless --require-cnf.
    const plain = (await tokenRequestTls('basic-client', 'basic-secret')).body.access_token;
    assert.equal((await request(`${up.base}/y`, { headers: { authorization: `Bearer ${plain}` }, tls: withCert('client') })).status, 200);
    await ctl(up.base, '/_test/config', { require_cnf: true });
    const refused = await request(`${up.base}/y`, { headers: { authorization: `Bearer ${plain}` }, tls: withCert('client') });
    assert.equal(refused.status, 401);
    assert.match(refused.headers.get('www-authenticate'), /error_description="token is not certificate-bound \(no cnf.x5t#S256\)"/);
    assert.equal((await call('client')).status, 200);
    await ctl(up.base, '/_test/reset');
  });

  const tokenRequestTls = (id, secret) => request(idp.token_url, {
    method: 'POST', body: form({}), headers: { authorization: basicAuth(id, secret) }, tls: ca(),
  });

  it('upstream: a correct DPoP proof is accepted; each broken one is refused with the reason', async () => {
    await ctl(up.base, '/_test/reset');
    const key = await dpopKey();
    const otherKey = await dpopKey();
    const t = (await dpopToken(key)).body.access_token;
    const htu = `${up.base}/api/thing`;
    const call = async (proofOrOpts, { scheme = 'DPoP', method = 'GET', headers = {}, body } = {}) => {
      const dpop = typeof proofOrOpts === 'string' || Array.isArray(proofOrOpts) || proofOrOpts === null
        ? proofOrOpts
        : await dpopProof(proofOrOpts.key ?? key, { htm: method, htu, accessToken: t, ...proofOrOpts });
      return request(`${htu}?q=1`, { method, body, headers: { authorization: `${scheme} ${t}`, ...(dpop ? { dpop } : {}), ...headers }, tls: ca() });
    };

    const ok = await call({});
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    assert.equal(ok.body.dpop_valid, true);
    assert.equal(ok.body.dpop.jkt, key.jkt);
    assert.equal(ok.body.dpop.htu, htu);
    assert.equal(ok.body.token.cnf.jkt, key.jkt);
    const post = await call({}, { method: 'POST', body: 'hello' });
    assert.equal(post.status, 200, JSON.stringify(post.body));
    assert.equal((await call({ htu: `${htu}?ignored=1#frag` })).status, 200, 'query and fragment are ignored');
    assert.equal((await call({ htu: `HTTPS://127.0.0.1:${up.port}/api/%74hing` })).status, 200, 'htu is compared after normalisation');

    const reused = await dpopProof(key, { htm: 'GET', htu, accessToken: t });
    assert.equal((await call(reused)).status, 200);

    const cases = [
      ['missing', null, 'invalid_dpop_proof', 'DPoP header missing'],
      ['two headers', [reused, reused], 'invalid_dpop_proof', 'more than one DPoP header'],
      ['not a JWT', 'garbage', 'invalid_dpop_proof', 'DPoP proof is not a JWT'],
      ['bad signature', { signWith: otherKey }, 'invalid_dpop_proof', 'DPoP proof signature invalid (ERR_JWS_SIGNATURE_VERIFICATION_FAILED)'],
      ['typ', { header: { typ: 'JWT' } }, 'invalid_dpop_proof', 'DPoP proof typ is not dpop+jwt'],
      ['private jwk', { header: { jwk: { ...key.jwk, d: 'AAAA' } } }, 'invalid_dpop_proof', 'DPoP proof jwk contains a private key'],
      ['wrong htm', { htm: 'POST' }, 'invalid_dpop_proof', 'DPoP proof htm mismatch'],
      ['wrong htu path', { htu: `${up.base}/api/other` }, 'invalid_dpop_proof', 'DPoP proof htu mismatch'],
      ['wrong htu scheme', { htu: `http://127.0.0.1:${up.port}/api/thing` }, 'invalid_dpop_proof', 'DPoP proof htu mismatch'],
      ['stale iat', { claims: { iat: Math.floor(Date.now() / 1000) - 120 } }, 'invalid_dpop_proof', 'DPoP proof iat is not recent enough'],
      ['future iat', { claims: { iat: Math.floor(Date.now() / 1000) + 120 } }, 'invalid_dpop_proof', 'DPoP proof iat is not recent enough'],
      ['reused jti', reused, 'invalid_dpop_proof', 'DPoP proof jti reused'],
      ['wrong ath', { accessToken: 'another token' }, 'invalid_dpop_proof', 'DPoP proof ath mismatch'],
      ['no ath', { claims: { ath: undefined } }, 'invalid_dpop_proof', 'DPoP proof ath mismatch'],
      ['wrong jkt', { key: otherKey }, 'invalid_token', 'DPoP proof key does not match cnf.jkt'],
    ];
    for (const [name, proof, error, why] of cases) {
      const r = await call(proof);
      assert.equal(r.status, 401, `${name}: ${JSON.stringify(r.body)}`);
      assert.equal(r.headers.get('www-authenticate'),
        `DPoP error="${error}", error_description="${why}", algs="ES256 ES384 ES512 PS256 PS384 PS512 RS256 RS384 RS512 EdDSA Ed25519"`, name);
      assert.deepEqual(r.body, { error, error_description: why }, name);
    }
    const bearer = await call(null, { scheme: 'Bearer' });
    assert.equal(bearer.status, 401);
    assert.match(bearer.headers.get('www-authenticate'), /^DPoP error="invalid_token", error_description="DPoP-bound token used with the Bearer scheme"/);

    // An unbound token with the DPoP scheme.
    const plain = (await tokenRequestTls('basic-client', 'basic-secret')).body.access_token;
    const unbound = await request(htu, {
      headers: { authorization: `DPoP ${plain}`, dpop: await dpopProof(key, { htm: 'GET', htu, accessToken: plain }) }, tls: ca(),
    });
    assert.equal(unbound.status, 401);
    assert.match(unbound.headers.get('www-authenticate'), /error_description="token is not DPoP-bound \(no cnf.jkt\)"/);

    const reqs = (await request(`${up.base}/_test/requests`, { tls: ca() })).body.requests;
    const reasons = reqs.map((r) => r.dpop_error ?? null);
    assert.deepEqual(reasons.slice(0, 5), [null, null, null, null, null]);
    assert.deepEqual(reasons.slice(5, 5 + cases.length), cases.map((c) => c[3]));
    assert.equal(reqs[0].dpop.jkt, key.jkt);
    assert.equal(reqs[0].dpop_expected_htu, htu);
    assert.equal(reqs[0].authorization_scheme, 'DPoP');
    assert.equal(reqs[1].method, 'POST');
    assert.equal(reqs[1].body_length, 5);
  });

  it('upstream --dpop-nonce: 401 use_dpop_nonce with DPoP-Nonce, the nonce works, rotation, always-new', async () => {
    const upN = await startUpstream(idp.issuer, ['--tls-cert', pki.server.cert, '--tls-key', pki.server.key, '--idp-ca', pki.ca.cert, '--dpop-nonce']);
    try {
      const key = await dpopKey();
      const t = (await dpopToken(key)).body.access_token;
      const htu = `${upN.base}/n`;
      const call = async (nonce) => request(htu, {
        headers: { authorization: `DPoP ${t}`, dpop: await dpopProof(key, { htm: 'GET', htu, accessToken: t, nonce }) }, tls: ca(),
      });
      const first = await call();
      assert.equal(first.status, 401);
      assert.match(first.headers.get('www-authenticate'), /^DPoP error="use_dpop_nonce", error_description="Resource server requires nonce in DPoP proof"/);
      const nonce = first.headers.get('dpop-nonce');
      assert.ok(nonce);
      assert.equal((await call(nonce)).status, 200);
      assert.equal((await call(nonce)).status, 200, 'the nonce stays valid until rotated');
      const rotated = (await ctl(upN.base, '/_test/dpop_nonce', { rotate: true })).body.current;
      assert.notEqual(rotated, nonce);
      const stale = await call(nonce);
      assert.equal(stale.status, 401);
      assert.equal(stale.headers.get('dpop-nonce'), rotated);
      assert.match(stale.headers.get('www-authenticate'), /error_description="DPoP proof nonce is not the current one"/);
      assert.equal((await call(rotated)).status, 200);

      await ctl(upN.base, '/_test/dpop_nonce', { always_new: true });
      const a = await call(rotated);
      assert.equal(a.status, 401);
      const b = await call(a.headers.get('dpop-nonce'));
      assert.equal(b.status, 401, 'always a new nonce');
      assert.notEqual(b.headers.get('dpop-nonce'), a.headers.get('dpop-nonce'));
      const st = (await request(`${upN.base}/_test/dpop_nonce`, { tls: ca() })).body;
      assert.equal(st.challenges, 4);
      const reqs = (await request(`${upN.base}/_test/requests`, { tls: ca() })).body.requests;
      assert.deepEqual(reqs.map((r) => r.status), [401, 200, 200, 401, 200, 401, 401]);
      assert.equal(reqs[0].dpop_nonce_sent, nonce);
      assert.equal(reqs[1].dpop.nonce, nonce);
    } finally {
      await stop(upN);
    }
  });

  it('keeps stdout to the single ready line over TLS', () => {
    assert.equal(idp.stdoutLines.length, 1, idp.stdoutLines.join('\n'));
    assert.equal(up.stdoutLines.length, 1, up.stdoutLines.join('\n'));
  });
});
