#!/usr/bin/env python3
"""Print N benchmark credentials as JSON Lines (for `credvault cred import -`); nothing is written to disk.

Usage: gen.py N [SAFE]
Credential i: name bench-<i>, username user<i>, secret secret-<i>, one parameter, PolicyID Bench."""
import json
import sys

n = int(sys.argv[1])
safe = sys.argv[2] if len(sys.argv) > 2 else None
out = sys.stdout
for i in range(n):
    cred = {"name": f"bench-{i}", "username": f"user{i}", "secret": f"secret-{i}",
            "parameters": {"port": str(1000 + i % 1000)}, "properties": {"PolicyID": "Bench"}}
    if safe:
        cred["safe"] = safe
    out.write(json.dumps(cred))
    out.write("\n")
