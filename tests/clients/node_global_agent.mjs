// Node http/https through global-agent (GLOBAL_AGENT_HTTP_PROXY from the environment).
// usage: node node_global_agent.mjs URL [METHOD] [BODY]
// Prints {"status", "headers": [[name, value]...], "body"} as JSON.
import http from 'node:http';
import https from 'node:https';
import globalAgent from 'global-agent';

globalAgent.bootstrap();

const [url, method = 'GET', body] = process.argv.slice(2);
const target = new URL(url);
const mod = target.protocol === 'https:' ? https : http;
const headers = {};
if (body !== undefined) {
  headers['content-type'] = 'application/json';
  headers['content-length'] = Buffer.byteLength(body);
}
const req = mod.request(target, { method, headers }, (res) => {
  const chunks = [];
  res.on('data', (c) => chunks.push(c));
  res.on('end', () => {
    const pairs = [];
    for (let i = 0; i < res.rawHeaders.length; i += 2) {
      pairs.push([res.rawHeaders[i], res.rawHeaders[i + 1]]);
    }
    process.stdout.write(JSON.stringify({
      status: res.statusCode,
      headers: pairs,
      body: Buffer.concat(chunks).toString('utf8'),
    }));
  });
});
req.setTimeout(20000, () => req.destroy(new Error('timeout')));
req.on('error', (e) => {
  console.error(`request failed: ${e.stack || e}`);
  process.exit(2);
});
if (body !== undefined) req.write(body);
req.end();
