"""Python `requests` client through HTTP_PROXY/HTTPS_PROXY from the environment.

usage: py_requests.py URL [--method M] [--data TEXT] [--cafile PEM] [--header 'Name: value']...
Prints {"status", "headers": [[name, value]...], "body"} as JSON.
"""
import argparse
import json
import sys

import requests


def main():
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("--method", default="GET")
    p.add_argument("--data", default=None)
    p.add_argument("--cafile", default=None)
    p.add_argument("--header", action="append", default=[])
    a = p.parse_args()

    headers = {}
    for h in a.header:
        name, value = h.split(":", 1)
        headers[name.strip()] = value.strip()
    resp = requests.request(a.method, a.url, data=a.data, headers=headers,
                            verify=a.cafile if a.cafile else True, timeout=20)
    json.dump({"status": resp.status_code, "headers": [[k, v] for k, v in resp.headers.items()],
               "body": resp.text}, sys.stdout)


if __name__ == "__main__":
    main()
