#!/usr/bin/env python3
"""Print N benchmark credentials as JSON Lines (for `credvault cred import -`); nothing is written to disk.

Usage: gen.py N [SAFE] [NAME_PREFIX]
Credential i: name <NAME_PREFIX><i> (default bench-<i>), username user<i>, secret secret-<i>, one
parameter, PolicyID Bench. bench/run.sh uses the prefix cred- so that these names differ from the
Vault KV secrets it writes at secret/data/bench-<i> (a KV secret's credential is named after its path)."""
import json
import sys

n = int(sys.argv[1])
safe = sys.argv[2] if len(sys.argv) > 2 and sys.argv[2] else None
prefix = sys.argv[3] if len(sys.argv) > 3 else "bench-"
out = sys.stdout
for i in range(n):
    cred = {"name": f"{prefix}{i}", "username": f"user{i}", "secret": f"secret-{i}",
            "parameters": {"port": str(1000 + i % 1000)}, "properties": {"PolicyID": "Bench"}}
    if safe:
        cred["safe"] = safe
    out.write(json.dumps(cred))
    out.write("\n")
