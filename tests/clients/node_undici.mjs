// Node undici through HTTP_PROXY.
// usage: node node_undici.mjs URL [METHOD] [BODY] [--tunnel]
//   default: ProxyAgent with proxyTunnel: false (absolute-form for http:// URLs);
//   --tunnel: undici's default, which tunnels even http:// through CONNECT.
// Prints {"status", "headers": [[name, value]...], "body"} as JSON.
import { ProxyAgent, request } from 'undici';

const args = process.argv.slice(2);
const tunnel = args.includes('--tunnel');
const [url, method = 'GET', body] = args.filter((a) => a !== '--tunnel');
const proxy = process.env.HTTP_PROXY;
if (!proxy) {
  console.error('HTTP_PROXY is not set');
  process.exit(2);
}
const dispatcher = new ProxyAgent({ uri: proxy, proxyTunnel: tunnel });
try {
  const headers = body !== undefined ? { 'content-type': 'application/json' } : {};
  const res = await request(url, { method, body, headers, dispatcher, headersTimeout: 20000, bodyTimeout: 20000 });
  const text = await res.body.text();
  const pairs = [];
  for (const [k, v] of Object.entries(res.headers)) {
    for (const one of Array.isArray(v) ? v : [v]) pairs.push([k, one]);
  }
  process.stdout.write(JSON.stringify({ status: res.statusCode, headers: pairs, body: text }));
  await dispatcher.close();
} catch (e) {
  console.error(`request failed: ${e.stack || e}`);
  process.exit(2);
}
