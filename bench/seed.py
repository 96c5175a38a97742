#!/usr/bin/env python3
"""Create N credentials through the native API and print their ids, one per line.

Usage: seed.py URL TOKEN N [SAFE]  (standard library only; keep-alive connections, 8 threads).
Credential i has username user<i> and secret secret-<i>; with SAFE it is created in that safe."""
import http.client
import json
import sys
import threading
import urllib.parse

url, token, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
safe = sys.argv[4] if len(sys.argv) > 4 else None
u = urllib.parse.urlparse(url)
ids, lock = [], threading.Lock()


def worker(start, step):
    conn = http.client.HTTPConnection(u.hostname, u.port)
    for i in range(start, n, step):
        cred = {"name": f"bench-{i}", "username": f"user{i}", "secret": f"secret-{i}",
                "parameters": {"port": str(1000 + i % 1000)}, "properties": {"PolicyID": "Bench"}}
        if safe:
            cred["safe"] = safe
        body = json.dumps(cred)
        conn.request("POST", "/api/v1/credentials", body, {"X-Vault-Token": token, "Content-Type": "application/json"})
        r = conn.getresponse()
        data = r.read()
        if r.status != 201:
            sys.exit(f"seed failed: {r.status} {data[:200]!r}")
        with lock:
            ids.append(json.loads(data)["id"])


threads = [threading.Thread(target=worker, args=(k, 8)) for k in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print("\n".join(ids))
