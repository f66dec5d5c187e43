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
  DIR, callUpstream, clientAssertion, decodeJwtPayload, getJson, postJson, sleep,
  startIdp, startUpstream, stop, stopAll, tokenRequest,
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
