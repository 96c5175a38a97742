#!/usr/bin/env python3
"""Seed N items through a server's own door, each index 0 .. N-1 exactly once, over CONC keep-alive
connections (standard library only: asyncio and HTTP/1.1). An answer other than 2xx is retried (up to
5 times, for 429/5xx); the script fails if any item is not written.

Usage: seed.py BASE_URL KIND TOKEN N [CONC]
  KIND=kv      POST /v1/secret/data/bench-<i> {"data":{"password":"secret-<i>","username":"user<i>"}}
               with X-Vault-Token: TOKEN (credvault's /v1 door, or OpenBao)
  KIND=entity  POST /api/credentials/for/ent-<i> {"login":"user<i>","password":"secret-<i>"}
               with Authorization: Bearer TOKEN (credvault's entity door)
Prints one line: SEED {"kind":..,"n":..,"seconds":..,"per_second":..,"retries":..}"""
import asyncio
import json
import sys
import time
from urllib.parse import urlsplit


def request_for(kind, token, host, i):
    if kind == "kv":
        path = f"/v1/secret/data/bench-{i}"
        body = json.dumps({"data": {"password": f"secret-{i}", "username": f"user{i}"}})
        auth = f"X-Vault-Token: {token}"
    elif kind == "entity":
        path = f"/api/credentials/for/ent-{i}"
        body = json.dumps({"login": f"user{i}", "password": f"secret-{i}"})
        auth = f"Authorization: Bearer {token}"
    else:
        raise SystemExit(f"unknown kind {kind}")
    data = body.encode()
    head = (f"POST {path} HTTP/1.1\r\nHost: {host}\r\n{auth}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n\r\n")
    return head.encode() + data


async def read_response(reader):
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("connection closed")
    status = int(status_line.split()[1])
    length, chunked, close = 0, False, False
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        k, _, v = line.decode("latin-1").partition(":")
        k, v = k.strip().lower(), v.strip().lower()
        if k == "content-length":
            length = int(v)
        elif k == "transfer-encoding" and "chunked" in v:
            chunked = True
        elif k == "connection" and v == "close":
            close = True
    if chunked:
        while True:
            size = int((await reader.readline()).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    elif length:
        await reader.readexactly(length)
    return status, close


async def worker(host, port, kind, token, queue, stats):
    reader = writer = None
    while True:
        try:
            i = queue.get_nowait()
        except asyncio.QueueEmpty:
            break
        for attempt in range(6):
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection(host, port)
                writer.write(request_for(kind, token, f"{host}:{port}", i))
                await writer.drain()
                status, close = await read_response(reader)
                if close:
                    writer.close()
                    writer = None
            except (ConnectionError, asyncio.IncompleteReadError, OSError) as e:
                if writer is not None:
                    writer.close()
                writer = None
                status = f"connection: {e}"
            if isinstance(status, int) and 200 <= status < 300:
                break
            stats["retries"] += 1
            if attempt == 5 or status in (400, 401, 403, 404):
                raise SystemExit(f"seeding {kind} item {i} failed: {status}")
            await asyncio.sleep(0.05 * (attempt + 1))
    if writer is not None:
        writer.close()


async def main():
    base, kind, token, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    conc = int(sys.argv[5]) if len(sys.argv) > 5 else 64
    u = urlsplit(base)
    queue = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(i)
    stats = {"retries": 0}
    t0 = time.monotonic()
    await asyncio.gather(*(worker(u.hostname, u.port, kind, token, queue, stats) for _ in range(min(conc, n))))
    dt = time.monotonic() - t0
    print("SEED " + json.dumps({"kind": kind, "n": n, "seconds": round(dt, 1),
                                "per_second": round(n / dt) if dt else 0, "retries": stats["retries"]}))


asyncio.run(main())
