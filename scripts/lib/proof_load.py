"""The load part of `scripts/proof load` (issue 18), run by scripts/lib/proof.py with that module
as `w` (its processes, HTTP helpers and checks):

- the first load of the overview, the rollout and the rollback page, each file weighed gzip as
  served (end2end/first-load.mjs, the same script scripts/end2end holds to the same budgets);
- the overview on a phone's poor connection (end2end/throttled.mjs);
- 50 connections for 60 s against / and against /api/v1/status, resident memory sampled.
"""

import json
import os
import re
import subprocess
import threading
import time


def wrk(w, path, seconds, connections, out_name):
    """Runs wrk against path; returns requests/s, p50 and p99 in ms, errors."""
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "10s",
                          "-H", "Accept-Encoding: gzip, br", f"{w.ORIGIN}{path}"],
                         capture_output=True, text=True, check=True).stdout
    with open(os.path.join(w.RUN, out_name), "w") as f:
        f.write(out)

    def ms(label):
        m = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        v, unit = float(m.group(1)), m.group(2)
        return v / 1000 if unit == "us" else v * 1000 if unit == "s" else v

    total = int(re.search(r"(\d+) requests in", out).group(1))
    non2xx = int((re.search(r"Non-2xx or 3xx responses: (\d+)", out) or [0, 0])[1])
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    sock_errors = sum(int(x) for x in sock.groups()) if sock else 0
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    return {"requests": total, "rps": rps, "p50_ms": ms("50"), "p99_ms": ms("99"), "non2xx": non2xx,
            "socket_errors": sock_errors}


def sample_rss(proc, stop, samples):
    while not stop.is_set():
        v = proc.rss_kb()
        if v:
            samples.append((time.monotonic(), v))
        stop.wait(1.0)


def first_load(w, path):
    """One page's first load as Chromium makes it, each file weighed gzip as served, against its
    budgets (end2end/first-load.mjs and end2end/budgets.json, as scripts/end2end checks them)."""
    out = subprocess.run(["node", "first-load.mjs", w.ORIGIN + path],
                         cwd=os.path.join(w.ENV["PROOF_REPO"], "end2end"), capture_output=True, text=True)
    lines = out.stdout.strip().splitlines()
    w.check(bool(lines), f"{path}: the first load was measured {out.stderr.strip()[:300]}")
    return json.loads(lines[-1]) if lines else {"files": [], "total_gzip_bytes": 0, "largest_module": None,
                                                  "budget": {"total": 0, "module": 0}, "problems": ["not measured"]}


def page_weight(w):
    with open(os.path.join(w.ENV["PROOF_REPO"], "end2end", "budgets.json")) as f:
        pages = json.load(f)["pages"]
    for path in pages:
        fl = first_load(w, path)
        w.FIGURES.setdefault("page_weight", {})[path] = fl
        files, largest = fl["files"], fl["largest_module"] or {"path": "none", "gzip_bytes": 0}
        if path == "/":
            for f in files:
                w.log(f"  {f['path']}: {f['gzip_bytes'] / 1024:.1f} KiB gzip")
            pkg = [f for f in files if f["path"].startswith("/pkg/")]
            w.check(all(re.search(r"\.[A-Za-z0-9_-]{8,}\.(js|wasm|css|json)$", f["path"]) for f in pkg),
                  "asset names carry content hashes")
            w.check(all("immutable" in (f["cache_control"] or "") for f in pkg),
                  "hashed assets are served with Cache-Control immutable")
            page = [f for f in files if f["path"] == "/"]
            w.check(bool(page) and page[0]["cache_control"] == "no-store", "the page itself is not cached")
        total_budget, module_budget = fl["budget"]["total"], fl["budget"]["module"]
        w.check(not fl["problems"], f"{path} hydrates without errors: {fl['problems']}")
        w.check(fl["total_gzip_bytes"] <= total_budget,
              f"first load of {path}: {len(files)} files, {fl['total_gzip_bytes']:,} bytes gzip "
              f"(budget {total_budget:,})")
        w.check(largest["gzip_bytes"] <= module_budget,
              f"{path}: largest wasm module {largest['path']} {largest['gzip_bytes']:,} bytes gzip "
              f"(budget {module_budget:,})")


def throttled_first_load(w):
    """The overview, the rollout and the rollback page on a phone's poor connection (1.6 Mbit/s,
    150 ms RTT, fresh cache), median of 3 each: values on screen and working controls."""
    w.FIGURES["throttled"] = {}
    for path, selector in (("/", '[data-testid="headline-flag"]'), ("/rollout", "h1"), ("/rollback", "h1")):
        runs = []
        for _ in range(3):
            out = subprocess.run(["node", "throttled.mjs", w.ORIGIN + path, selector],
                                 cwd=os.path.join(w.ENV["PROOF_REPO"], "end2end"), capture_output=True, text=True)
            w.check(out.returncode == 0, f"throttled: {path} loads {out.stderr.strip()[:300]}")
            if out.returncode == 0:
                runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
        if not runs:
            continue
        med = lambda key: sorted(r[key] for r in runs)[len(runs) // 2]
        w.FIGURES["throttled"][path] = {"runs": runs, "values_ms": med("values_ms"), "controls_ms": med("controls_ms"),
                                        "transferred_bytes": med("transferred_bytes")}
        w.log(f"  throttled {path} (1.6 Mbit/s, 150 ms RTT, fresh cache), median of 3: values on screen "
              f"{med('values_ms')} ms, working controls {med('controls_ms')} ms, "
              f"{med('transferred_bytes'):,} bytes transferred")
        w.check(med("values_ms") < 2000, f"throttled {path}: values on screen in {med('values_ms')} ms (target under 2 s)")
        w.check(med("controls_ms") < 3000,
                f"throttled {path}: its code has taken over in {med('controls_ms')} ms (target under 3 s)")


def run(w):
    w.log(f"load: 50 connections for 60 s each against / and /api/v1/status (refresh {w.REFRESH} s)")
    page_weight(w)
    throttled_first_load(w)
    for p in ("/", "/api/v1/status"):
        w.get(p)
    time.sleep(2)
    before = w.DASHBOARD.rss_kb()
    stop, samples = threading.Event(), []
    t = threading.Thread(target=sample_rss, args=(w.DASHBOARD, stop, samples))
    t.start()
    results = {}
    for name, path in (("overview", "/"), ("status", "/api/v1/status")):
        results[name] = wrk(w, path, 60, 50, f"wrk-{name}.txt")
        r = results[name]
        w.log(f"  {path}: {r['requests']} requests, {r['rps']:.0f}/s, p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, "
            f"non-2xx {r['non2xx']}, socket errors {r['socket_errors']}")
        w.check(r["non2xx"] == 0 and r["socket_errors"] == 0, f"{path} under load: no error responses")
    stop.set()
    t.join()
    time.sleep(10)
    after = w.DASHBOARD.rss_kb()
    peak = max(v for _, v in samples)
    w.FIGURES["load"] = {"results": results, "rss_kb": {"before": before, "peak_during": peak, "after_10s": after}}
    w.log(f"  resident memory: before {before / 1024:.1f} MiB, peak during {peak / 1024:.1f} MiB, "
        f"10 s after {after / 1024:.1f} MiB")
    w.check(w.DASHBOARD.alive(), "the dashboard is still running after the load")
    # The page against its own data in the same run (the machine is shared: absolute figures move,
    # the ratio much less); before the page cache it was about 1 : 48.
    page, data = results["overview"], results["status"]
    w.FIGURES["load"]["page_to_data_ratio"] = page["rps"] / data["rps"]
    w.log(f"  / serves {page['rps'] / data['rps']:.3f} of what /api/v1/status serves (1 : {data['rps'] / page['rps']:.1f})")
    w.check(page["p99_ms"] < 50, f"/ under 50 connections: p99 {page['p99_ms']:.1f} ms (target under 50 ms)")
    w.check(peak < 100 * 1000 * 1000 / 1024, f"resident memory at peak {peak / 1024:.1f} MiB (target under 100 MB)")
