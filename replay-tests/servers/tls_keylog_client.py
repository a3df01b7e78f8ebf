"""One HTTPS GET with Python's ssl module logging its TLS secrets (context.keylog_filename).

Usage: tls_keylog_client.py HOST PORT PATH CAFILE KEYLOG MAXVERSION(1.2|1.3)
Prints one JSON line: the status, the response headers and the body, as the client saw them.
"""

import http.client
import json
import ssl
import sys


def main():
    host, port, path, cafile, keylog, maxver = sys.argv[1:7]
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.keylog_filename = keylog
    ctx.maximum_version = (
        ssl.TLSVersion.TLSv1_2 if maxver == "1.2" else ssl.TLSVersion.TLSv1_3
    )
    ctx.set_alpn_protocols(["http/1.1"])
    conn = http.client.HTTPSConnection(host, int(port), context=ctx, timeout=20)
    conn.request("GET", path)
    resp = conn.getresponse()
    body = resp.read()
    print(
        json.dumps(
            {
                "status": resp.status,
                "headers": [[k.lower(), v] for k, v in resp.getheaders()],
                "body": body.decode("utf-8", "replace"),
                "tls": conn.sock.version(),
            }
        )
    )
    conn.close()


if __name__ == "__main__":
    main()
