#!/usr/bin/env python3
"""Tables, ratios against issue 15's targets, and a chart, from the rows bench/run.sh recorded.

Usage:
  report.py OUT [--baseline OTHER_OUT]   write OUT/results.md, OUT/results.json, OUT/chart.svg
                                         (--baseline: a run with fewer credentials, for the scale target)
  report.py --header                     the live table's header (run.sh prints one line per row)
  report.py --row ROWS.jsonl             the last row of ROWS.jsonl as a line of the live table
  report.py --half-rate ROWS.jsonl TARGET CONNS
                                         half the requests/s of TARGET's closed-loop row at CONNS

rows.jsonl holds one JSON object per measurement: target, server, backend, door, kind (read|write),
label, mode (closed: wrk's BENCH line under "wrk"; fixed: "rate" and oha's JSON summary under "oha"),
conns."""
import json
import os
import sys

# Issue 15's targets.
READ_OF_CEILING = 0.30
KV_READ_VS_OPENBAO = 5.0
KV_WRITE_VS_OPENBAO = 3.0
P99_MS = 5.0
PG_OF_SQLITE = 0.50
RSS_MB = 100
SCALE_LATENCY = 1.2
LIST_SCALE = 2.0
READ_DOORS = ["secret_read", "ccp_read", "kv_read", "fetch_read", "entity_read", "a2a_read"]
DOOR_NAMES = {
    "hello": "hello",
    "secret_read": "native secret read",
    "ccp_read": "CCP read",
    "kv_read": "KV v2 read",
    "kv_list": "KV v2 LIST of 10 keys",
    "fetch_read": "fetch-credentials",
    "entity_read": "entity read",
    "a2a_read": "A2A read",
    "kv_write": "KV v2 write",
}

REQUESTS = [
    ("hello", "`GET /hello` on `bench/hello` (bare axum JSON hello-world)."),
    ("secret_read", "`GET /api/v1/credentials/{id}/secret`, `X-Vault-Token: <root>`, one of the imported ids."),
    ("ccp_read", "`GET /AIMWebService/api/Accounts?AppID=Bench&Query=Safe=BenchSafe;UserName=user<i>` "
                 "(application Bench, source rule 127.0.0.1, granted safe BenchSafe)."),
    ("kv_read", "`GET /v1/secret/data/bench-<i>`, `X-Vault-Token: <root>`; the same on OpenBao (KV v2 at `secret/`)."),
    ("kv_list", "`GET /v1/secret/metadata/list10/?list=true` (a folder of 10 secrets in the mount beside the seeded "
                "`bench-<i>`), `X-Vault-Token: <root>`; the same on OpenBao."),
    ("fetch_read", "`GET /api/fetch-credentials?identifier=cred-<i>`, `X-Vault-Token: <root>`; an answer `[]` "
                   "counts as an error (wrk rows; oha cannot look into bodies)."),
    ("entity_read", "`GET /api/public/v1/credentials/for/ent-<i>`, `Authorization: Bearer <root>` (404 when not set)."),
    ("a2a_read", "`GET /iso/pam/credential/{id}`, `Authorization: Bearer <token>` from `POST /iso/oauth2/token` "
                 "(client credentials of application Bench); each read also records custody."),
    ("kv_write", "`POST /v1/secret/data/bench-<i>` `{\"data\":{\"password\":\"w-<i>-<random>\"}}`, "
                 "`X-Vault-Token: <root>`: a new version of a seeded secret; the same on OpenBao."),
]


def load_rows(path):
    rows = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                rows.append(normalise(json.loads(line)))
    return rows


def normalise(r):
    """One shape for both modes: rps, p50_ms, p99_ms, non2xx, errors (socket errors + wrong 2xx answers)."""
    if r["mode"] == "closed":
        w = r["wrk"]
        r.update(rps=w["rps"], p50_ms=w["p50_us"] / 1000, p99_ms=w["p99_us"] / 1000,
                 non2xx=w["non2xx"], errors=w["errors"] + w.get("empty", 0), requests=w["requests"],
                 success=None)
    else:
        o = r["oha"]
        s = o.get("summary", {})
        lat = o.get("latencyPercentiles", {})
        codes = o.get("statusCodeDistribution", {}) or {}
        errs = o.get("errorDistribution", {}) or {}
        ok = sum(v for k, v in codes.items() if str(k).startswith("2"))
        total = sum(codes.values()) + sum(errs.values())
        r.update(rps=s.get("requestsPerSec") or 0,
                 p50_ms=(lat.get("p50") or 0) * 1000, p99_ms=(lat.get("p99") or 0) * 1000,
                 non2xx=sum(codes.values()) - ok, errors=sum(errs.values()), requests=total,
                 success=(ok / total) if total else 0.0)
    return r


def fmt_rps(x):
    return f"{x:,.0f}"


def fmt_ms(x):
    return f"{x:.2f} ms"


def bad(r):
    return r["non2xx"] + r["errors"]


def live_line(r):
    flag = "" if bad(r) == 0 else " **ERRORS**"
    if r["mode"] == "closed":
        return (f"| {r['label']} | {r['conns']} | closed | {fmt_rps(r['rps'])} | {fmt_ms(r['p50_ms'])} | "
                f"{fmt_ms(r['p99_ms'])} | {r['non2xx']} | {r['errors']}{flag} |")
    return (f"| {r['label']} | {r['conns']} | fixed {fmt_rps(r['rate'])}/s | {fmt_rps(r['rps'])} | "
            f"{fmt_ms(r['p50_ms'])} | {fmt_ms(r['p99_ms'])} | {r['non2xx']} | {r['errors']}{flag} |")


LIVE_HEADER = ("| target | conns | mode | requests/s | p50 | p99 | non-2xx | errors |\n"
               "|---|---|---|---|---|---|---|---|")


def find(rows, target, conns, mode="closed"):
    for r in rows:
        if r["target"] == target and r["conns"] == conns and r["mode"] == mode:
            return r
    return None


def met(ok):
    if ok is None:
        return "n/a"
    return "met" if ok else "**not met**"


def ratio_row(what, num, den, goal, fmt="{:.2f}×"):
    if num is None or den is None or den["rps"] == 0:
        return None
    x = num["rps"] / den["rps"]
    shown = f"{x * 100:.1f} %" if goal < 1 else fmt.format(x)
    goal_shown = f"≥ {goal * 100:.0f} %" if goal < 1 else f"≥ {goal:g}×"
    return {"target": what, "measured": f"{fmt_rps(num['rps'])} / {fmt_rps(den['rps'])} req/s",
            "ratio": shown, "goal": goal_shown, "met": x >= goal, "value": x}


def evaluate(rows, meta, after, baseline_rows=None, baseline_meta=None):
    """The targets of issue 15, each with its measurement, ratio and met / not met."""
    out = []
    backends = meta.get("backends", [])
    first = "sqlite" if "sqlite" in backends else (backends[0] if backends else None)
    c64 = 64
    ceiling = find(rows, "ceiling", c64)
    # 1. Every read door >= 30 % of the ceiling at 64 connections (SQLite).
    for d in READ_DOORS:
        r = ratio_row(f"1. {DOOR_NAMES[d]} ({first}) ≥ 30 % of the ceiling, 64 conns",
                      find(rows, f"{first}/{d}", c64), ceiling, READ_OF_CEILING)
        if r:
            out.append(r)
    # 2. Against OpenBao (file audit), same run.
    for b in backends:
        r = ratio_row(f"2. KV v2 read, credvault {b} ≥ 5× OpenBao (file audit), 64 conns",
                      find(rows, f"{b}/kv_read", c64), find(rows, "openbao/kv_read", c64), KV_READ_VS_OPENBAO)
        if r:
            out.append(r)
        r = ratio_row(f"2. KV v2 write, credvault {b} ≥ 3× OpenBao (file audit), 64 conns",
                      find(rows, f"{b}/kv_write", c64), find(rows, "openbao/kv_write", c64), KV_WRITE_VS_OPENBAO)
        if r:
            out.append(r)
    # 3. Latency: p99 <= 5 ms at 64 conns and at the fixed rate; 256 conns without errors.
    for r in rows:
        if r["server"] in ("hello",) or not r["server"] or r["target"].startswith("openbao"):
            continue
        if r["kind"] != "read" and r["mode"] == "fixed":
            continue
        if r["mode"] == "closed" and r["conns"] == c64 and r["kind"] == "read":
            out.append({"target": f"3. p99 ≤ 5 ms, {r['label']}, 64 conns", "measured": fmt_ms(r["p99_ms"]),
                        "ratio": f"{r['p99_ms'] / P99_MS:.1f}× the limit", "goal": "≤ 5 ms",
                        "met": r["p99_ms"] <= P99_MS and bad(r) == 0, "value": r["p99_ms"]})
        if r["mode"] == "fixed":
            out.append({"target": f"3. p99 ≤ 5 ms at a fixed {fmt_rps(r['rate'])}/s (half the max), {r['label']}",
                        "measured": f"{fmt_ms(r['p99_ms'])}, {r['success'] * 100:.2f} % success",
                        "ratio": f"{r['p99_ms'] / P99_MS:.1f}× the limit", "goal": "≤ 5 ms",
                        "met": r["p99_ms"] <= P99_MS and bad(r) == 0, "value": r["p99_ms"]})
    # 256 connections: one line per server, every row of it without errors.
    for srv in backends + ["openbao", "openbao-noaudit"]:
        at256 = [r for r in rows if r["mode"] == "closed" and r["conns"] == 256 and r["server"] == srv]
        if at256:
            worst = max(at256, key=lambda r: r["p99_ms"])
            failing = [r for r in at256 if bad(r)]
            name = f"credvault {srv}" if srv in backends else srv
            out.append({"target": f"3. no errors at 256 conns, {name} ({len(at256)} rows)",
                        "measured": (", ".join(f"{r['door']}: {r['non2xx']} non-2xx, {r['errors']} errors"
                                               for r in failing) or "0 non-2xx, 0 errors")
                                    + f"; p99 up to {fmt_ms(worst['p99_ms'])} ({DOOR_NAMES.get(worst['door'])})",
                        "ratio": "", "goal": "0 errors", "met": not failing,
                        "value": sum(bad(r) for r in at256)})
    # 4. PostgreSQL >= 50 % of SQLite on the same reads.
    if "sqlite" in backends and "postgres" in backends:
        for d in READ_DOORS:
            r = ratio_row(f"4. {DOOR_NAMES[d]}: PostgreSQL ≥ 50 % of SQLite, 64 conns",
                          find(rows, f"postgres/{d}", c64), find(rows, f"sqlite/{d}", c64), PG_OF_SQLITE)
            if r:
                out.append(r)
    # 5. Scale: RSS at this run's size; latency against a smaller baseline run.
    rss = (after or {}).get("rss_kb", {})
    for b in backends:
        if rss.get(b):
            mb = rss[b] / 1024
            out.append({"target": f"5. credvault RSS ≤ 100 MB ({b}, {meta.get('creds'):,} credentials)",
                        "measured": f"{mb:.1f} MB", "ratio": "", "goal": "≤ 100 MB at 1,000,000 (n/a below)",
                        "met": (mb <= RSS_MB) if (meta.get("creds") or 0) >= 1_000_000 else None,
                        "value": mb})
    if baseline_rows:
        for r in rows:
            if r["mode"] != "closed" or r["conns"] != c64 or not r["server"] in backends:
                continue
            b0 = find(baseline_rows, r["target"], c64)
            if not b0 or not b0["p50_ms"] or not b0["p99_ms"]:
                continue
            x50, x99 = r["p50_ms"] / b0["p50_ms"], r["p99_ms"] / b0["p99_ms"]
            # A listing of 10 keys may cost up to 2x in a mount 1,000 times larger (issue 15).
            limit = LIST_SCALE if r["door"] == "kv_list" else SCALE_LATENCY
            out.append({"target": f"5. {baseline_meta.get('creds'):,} → {meta.get('creds'):,} credentials "
                                  f"≤ {limit}× in p50 and p99, {r['label']}",
                        "measured": f"p50 {fmt_ms(b0['p50_ms'])} → {fmt_ms(r['p50_ms'])}, "
                                    f"p99 {fmt_ms(b0['p99_ms'])} → {fmt_ms(r['p99_ms'])}",
                        "ratio": f"{x50:.2f}× / {x99:.2f}×", "goal": f"≤ {limit}×",
                        "met": x50 <= limit and x99 <= limit, "value": max(x50, x99)})
    return out


def seconds(d):
    """wrk/oha duration text (10s, 2m, 500ms) in seconds."""
    import re
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)?", str(d).strip())
    if not m:
        return None
    return float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]


def starved(rows, meta):
    """Closed-loop rows whose wrk ran much longer than asked: the load generator did not get its core."""
    asked = seconds(meta.get("duration", ""))
    if not asked:
        return []
    return [r for r in rows if r["mode"] == "closed" and r["wrk"]["duration_us"] / 1e6 > 1.5 * asked]


def markdown(rows, meta, after, targets):
    L = []
    L.append(f"Run of {meta.get('date')} (commit {meta.get('commit')}{' + local changes' if meta.get('dirty') else ''}), "
             f"{meta.get('cores')} cores ({meta.get('cpu')}), Linux {meta.get('kernel')}: "
             f"{meta.get('creds'):,} imported credentials, {meta.get('http_seed'):,} KV secrets and entities, "
             f"{meta.get('duration')} per row after a {meta.get('warmup')} warm-up per target; servers (and "
             f"PostgreSQL) on core {meta.get('server_core')}, load on core {meta.get('load_core')}; "
             f"{meta.get('wrk')}; {meta.get('oha') or 'no oha'}; {meta.get('openbao') or 'no OpenBao'}.")
    L.append("")
    conns = sorted({r["conns"] for r in rows if r["mode"] == "closed"})
    ceil = {c: find(rows, "ceiling", c) for c in conns}
    L.append("Closed loop (`wrk -t1`), a random seeded item per request:")
    L.append("")
    L.append("| target | connections | requests/s | of the ceiling | p50 | p99 | non-2xx | errors |")
    L.append("|---|---|---|---|---|---|---|---|")
    for c in conns:
        for r in rows:
            if r["mode"] != "closed" or r["conns"] != c:
                continue
            share = f"{r['rps'] / ceil[c]['rps'] * 100:.1f} %" if ceil.get(c) and r["target"] != "ceiling" else ""
            errs = f"**{r['errors']}**" if r["errors"] else "0"
            non = f"**{r['non2xx']}**" if r["non2xx"] else "0"
            L.append(f"| {r['label']} | {c} | {fmt_rps(r['rps'])} | {share} | {fmt_ms(r['p50_ms'])} | "
                     f"{fmt_ms(r['p99_ms'])} | {non} | {errs} |")
    fixed = [r for r in rows if r["mode"] == "fixed"]
    if fixed:
        L.append("")
        L.append(f"Fixed arrival rate (open loop, `oha -q RATE --latency-correction`, {fixed[0]['conns']} "
                 "connections), RATE = half the requests/s of the closed-loop row at the same connections:")
        L.append("")
        L.append("| target | rate asked | requests/s | p50 | p99 | success | non-2xx | errors |")
        L.append("|---|---|---|---|---|---|---|---|")
        for r in fixed:
            non = f"**{r['non2xx']}**" if r["non2xx"] else "0"
            errs = f"**{r['errors']}**" if r["errors"] else "0"
            L.append(f"| {r['label']} | {fmt_rps(r['rate'])}/s | {fmt_rps(r['rps'])} | {fmt_ms(r['p50_ms'])} | "
                     f"{fmt_ms(r['p99_ms'])} | {r['success'] * 100:.2f} % | {non} | {errs} |")
    slow = starved(rows, meta)
    if slow:
        L.append("")
        L.append("**Suspect rows**: wrk ran far longer than asked (its core was busy with something else), so "
                 "these figures are not the server's: " + ", ".join(
                     f"{r['label']} at {r['conns']} ({r['wrk']['duration_us'] / 1e6:.1f} s)" for r in slow) + ".")
    if targets:
        L.append("")
        L.append("Issue 15's targets, this run:")
        L.append("")
        L.append("| target | measured | ratio | goal | met? |")
        L.append("|---|---|---|---|---|")
        for t in targets:
            L.append(f"| {t['target']} | {t['measured']} | {t['ratio']} | {t['goal']} | {met(t['met'])} |")
    L.append("")
    L.append("What each row sends (a random seeded item per request; `bench/<door>.lua` for wrk, `bench/urls.py` for oha):")
    L.append("")
    for d, what in REQUESTS:
        if any(r["door"] == d for r in rows):
            L.append(f"- {DOOR_NAMES[d]}: {what}")
    if after:
        L.append("")
        rss = after.get("rss_kb", {})
        if rss:
            L.append("RSS after the run: " + ", ".join(
                f"{k} {v / 1024:.1f} MB" for k, v in sorted(rss.items()) if v) + ".")
        for b, v in (after.get("audit_verify") or {}).items():
            L.append(f"credvault audit chain on {b} (`POST /api/v1/audit/verify`): `{json.dumps(v)}`")
    return "\n".join(L) + "\n"


COLOURS = {"hello": "#888888", "sqlite": "#1f77b4", "postgres": "#2ca02c", "openbao": "#d62728",
           "openbao-noaudit": "#ff9896"}


def chart(rows, path, conns=64):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib missing: no chart (pip install matplotlib)", file=sys.stderr)
        return False
    order = ["hello"] + READ_DOORS + ["kv_list", "kv_write"]
    servers = ["hello", "sqlite", "postgres", "openbao", "openbao-noaudit"]
    closed = sorted((r for r in rows if r["mode"] == "closed" and r["conns"] == conns),
                    key=lambda r: (order.index(r["door"]) if r["door"] in order else 99,
                                   servers.index(r["server"]) if r["server"] in servers else 99))
    if not closed:
        return False
    fixed = {r["target"]: r for r in rows if r["mode"] == "fixed"}
    labels = [r["label"] for r in closed]
    colours = [COLOURS.get(r["server"], "#9467bd") for r in closed]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(15, 0.42 * len(closed) + 1.8), sharey=True)
    y = list(range(len(closed)))[::-1]
    ax1.barh(y, [r["rps"] for r in closed], color=colours)
    ax1.set_xscale("log")
    ax1.set_xlabel(f"requests/s at {conns} connections (log scale; more is better)")
    for yi, r in zip(y, closed):
        ax1.text(r["rps"], yi, f" {fmt_rps(r['rps'])}", va="center", fontsize=8)
    ax1.set_yticks(y)
    ax1.set_yticklabels(labels, fontsize=8)
    ax1.set_xlim(right=max(r["rps"] for r in closed) * 4)
    h = 0.38
    ax2.barh([v + h / 2 for v in y], [r["p99_ms"] for r in closed], height=h, color=colours,
             label=f"closed loop, {conns} conns (solid)")
    fx = [(yi, fixed[r["target"]]) for yi, r in zip(y, closed) if r["target"] in fixed]
    if fx:
        ax2.barh([yi - h / 2 for yi, _ in fx], [f["p99_ms"] for _, f in fx], height=h,
                 color=[COLOURS.get(f["server"], "#9467bd") for _, f in fx], alpha=0.45, hatch="//",
                 label="fixed rate (half the max), open loop (hatched)")
    ax2.axvline(P99_MS, color="black", linestyle="--", linewidth=1)
    ax2.text(P99_MS, len(closed) - 0.3, " 5 ms target", fontsize=8)
    ax2.set_xscale("log")
    ax2.set_xlabel("p99 latency, ms (log scale; less is better)")
    ax2.legend(fontsize=8, loc="lower right")
    for yi, r in zip(y, closed):
        ax2.text(r["p99_ms"], yi + h / 2, f" {r['p99_ms']:.1f}", va="center", fontsize=7)
    fig.suptitle("credvault (SQLite blue, PostgreSQL green) vs OpenBao (red) vs bare axum (grey), same run")
    fig.tight_layout()
    fig.savefig(path)
    fig.savefig(os.path.splitext(path)[0] + ".png", dpi=110)
    plt.close(fig)
    return True


def read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def main(argv):
    if argv[1:2] == ["--header"]:
        print(LIVE_HEADER)
        return
    if argv[1:2] == ["--row"]:
        print(live_line(load_rows(argv[2])[-1]))
        return
    if argv[1:2] == ["--half-rate"]:
        r = find(load_rows(argv[2]), argv[3], int(argv[4]))
        print(int(r["rps"] / 2) if r else 0)
        return
    out = argv[1]
    baseline = argv[argv.index("--baseline") + 1] if "--baseline" in argv else None
    rows = load_rows(os.path.join(out, "rows.jsonl"))
    meta = read_json(os.path.join(out, "meta.json"))
    after = read_json(os.path.join(out, "after.json"))
    brows = bmeta = None
    if baseline:
        brows = load_rows(os.path.join(baseline, "rows.jsonl"))
        bmeta = read_json(os.path.join(baseline, "meta.json"))
    targets = evaluate(rows, meta, after, brows, bmeta)
    md = markdown(rows, meta, after, targets)
    drawn = chart(rows, os.path.join(out, "chart.svg"))
    if drawn:
        md += "\n![requests/s and p99 per target](chart.svg)\n"
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write(md)
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump({"meta": meta, "rows": rows, "targets": targets, "after": after}, f, indent=1)
    print(md)


if __name__ == "__main__":
    main(sys.argv)
