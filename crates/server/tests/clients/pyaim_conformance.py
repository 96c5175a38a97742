"""Drive credvault's CCP door with pyaim (PyPI `pyaim`, an independently written CyberArk CCP client).

Usage: python3 pyaim_conformance.py HOST:PORT CA_PEM CLIENT_PEM CLIENT_KEY
Prints one JSON object with what each call returned or raised."""
import json
import sys

from pyaim import CCPPasswordREST

host, ca, cert, key = sys.argv[1:5]
ccp = CCPPasswordREST(f"https://{host}", verify=ca, cert=(cert, key), timeout=10)
out = {}


def attempt(name, **kw):
    try:
        r = ccp.GetPassword(**kw)
        out[name] = {"ok": True, "Content": r.get("Content"), "UserName": r.get("UserName"),
                     "Safe": r.get("Safe"), "Folder": r.get("Folder"), "PolicyID": r.get("PolicyID")}
    except Exception as e:  # pyaim raises ConnectionError for every CCP error
        out[name] = {"ok": False, "error": type(e).__name__, "message": str(e)}


attempt("by_username", appid="Billing", safe="Pay", username="pay", reason="pyaim conformance")
attempt("by_object", appid="Billing", safe="Pay", object="pay-db")
attempt("missing", appid="Billing", safe="Pay", username="nobody")
attempt("two_match", appid="Billing", safe="Pay", folder="Root", query_format="Exact", object="dup*")
attempt("unknown_app", appid="NoSuchApp", safe="Pay", username="pay")
print(json.dumps(out))
