// Node undici through HTTP_PROXY.
// usage: node node_undici.mjs URL [METHOD] [BODY] [--tunnel] [--token VALUE]
//   default: ProxyAgent with proxyTunnel: false (absolute-form for http:// URLs);
//   --tunnel: undici's default, which tunnels even http:// through CONNECT;
//   --token: ProxyAgent's `token` option, sent as Proxy-Authorization (e.g. 'Bearer <jwt>').
// Prints {"status", "headers": [[name, value]...], "body"} as JSON.
import { ProxyAgent, request } from 'undici';

const args = process.argv.slice(2);
const tunnel = args.includes('--tunnel');
const t = args.indexOf('--token');
const token = t >= 0 ? args[t + 1] : undefined;
const [url, method = 'GET', body] = args.filter((a, i) => a !== '--tunnel' && (t < 0 || (i !== t && i !== t + 1)));
const proxy = process.env.HTTP_PROXY;
if (!proxy) {
  console.error('HTTP_PROXY is not set');
  process.exit(2);
}
const dispatcher = new ProxyAgent({ uri: proxy, proxyTunnel: tunnel, ...(token ? { token } : {}) });
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
