"""Python stdlib client (urllib) through HTTP_PROXY/HTTPS_PROXY from the environment.

usage: py_urllib.py URL [--method M] [--data TEXT] [--cafile PEM] [--header 'Name: value']...
Prints {"status", "headers": [[name, value]...], "body"} as JSON. For an https:// URL
urllib sends `CONNECT host:port HTTP/1.0` with no headers, as real Python clients do.
"""
import argparse
import json
import ssl
import sys
import urllib.error
import urllib.request


def main():
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("--method", default=None)
    p.add_argument("--data", default=None)
    p.add_argument("--cafile", default=None)
    p.add_argument("--header", action="append", default=[])
    a = p.parse_args()

    handlers = [urllib.request.ProxyHandler()]  # reads *_proxy from the environment
    if a.cafile:
        handlers.append(urllib.request.HTTPSHandler(context=ssl.create_default_context(cafile=a.cafile)))
    opener = urllib.request.build_opener(*handlers)
    data = a.data.encode() if a.data is not None else None
    req = urllib.request.Request(a.url, data=data, method=a.method)
    for h in a.header:
        name, value = h.split(":", 1)
        req.add_header(name.strip(), value.strip())
    try:
        resp = opener.open(req, timeout=20)
        status, headers, body = resp.status, resp.getheaders(), resp.read()
    except urllib.error.HTTPError as e:  # 4xx/5xx still carry a response
        status, headers, body = e.code, list(e.headers.items()), e.read()
    json.dump({"status": status, "headers": [[k, v] for k, v in headers],
               "body": body.decode("utf-8", "replace")}, sys.stdout)


if __name__ == "__main__":
    main()
