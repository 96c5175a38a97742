#!/usr/bin/env python3
"""Print COUNT random request URLs of one door for oha --urls-from-file (the fixed-rate rows of run.sh);
the same requests the door's wrk script makes.

Usage: urls.py DOOR BASE_URL N [IDS_FILE] [COUNT]
  DOOR: hello, secret_read, ccp_read, kv_read, kv_list, fetch_read, entity_read, a2a_read
  N: the items seeded (indexes 0 .. N-1); IDS_FILE: credential ids, one a line (secret_read, a2a_read)."""
import random
import sys

door, base, n = sys.argv[1], sys.argv[2].rstrip("/"), int(sys.argv[3])
ids_file = sys.argv[4] if len(sys.argv) > 4 else ""
count = int(sys.argv[5]) if len(sys.argv) > 5 else 20000
ids = [line.strip() for line in open(ids_file)] if ids_file else []

paths = {
    "hello": lambda: "/hello",
    "secret_read": lambda: f"/api/v1/credentials/{random.choice(ids)}/secret",
    "ccp_read": lambda: "/AIMWebService/api/Accounts?AppID=Bench&Query=Safe%3DBenchSafe%3BUserName%3Duser"
    + str(random.randrange(n)),
    "kv_read": lambda: f"/v1/secret/data/bench-{random.randrange(n)}",
    "kv_list": lambda: "/v1/secret/metadata/list10/?list=true",
    "fetch_read": lambda: f"/api/fetch-credentials?identifier=cred-{random.randrange(n)}",
    "entity_read": lambda: f"/api/public/v1/credentials/for/ent-{random.randrange(n)}",
    "a2a_read": lambda: f"/iso/pam/credential/{random.choice(ids)}",
}[door]
out = sys.stdout
for _ in range(count):
    out.write(base + paths() + "\n")
