"""The abuse part of `scripts/proof abuse` (issue 31), run by scripts/lib/proof.py with that
module as `w` (its processes, HTTP helpers and checks). What anonymous clients can do to the
dashboard, measured against one viewer in the same run (these machines are shared and noisy):

- 8 clients asking for the largest report PNG (2400 x 2400) back to back, and 50 connections of
  mixed anonymous reads, every window a fresh value (`?range=4321m`, …) to try to defeat the
  caches, for 60 s;
- meanwhile: the dashboard's peak resident memory, `/readyz` every 100 ms (its p99), and the
  backend queries per second (the dashboard's own /metrics), against one viewer's baseline;
- then a kill by an operator, which must still land at once.
"""

import http.client
import random
import re
import threading
import time


def percentile(values, q):
    v = sorted(values)
    return v[min(len(v) - 1, int(q * len(v)))] if v else None


def backend_queries(w):
    text = w.get("/metrics", timeout=10).text()
    return {m.group(1): float(m.group(2))
            for m in re.finditer(r'^rollout_dashboard_backend_queries_total\{source="(\w+)"\} ([\d.e+]+)$', text, re.M)}


def phase(w, name, seconds, clients):
    """Runs `clients` (functions of a stop event) for `seconds`; returns what it measured."""
    stop = threading.Event()
    readyz, rss, counts = [], [], {"ok": 0, "refused": 0, "unavailable": 0, "failed": 0}
    lock = threading.Lock()

    def probe():
        while not stop.is_set():
            try:
                r = w.get("/readyz", timeout=10)
                readyz.append(r.seconds if r.status == 200 else 10.0)
            except (OSError, http.client.HTTPException):
                readyz.append(10.0)
            stop.wait(0.1)

    def memory():
        while not stop.is_set():
            v = w.DASHBOARD.rss_kb()
            if v:
                rss.append(v)
            stop.wait(0.25)

    def counted(client):
        def run():
            while not stop.is_set():
                try:
                    status = client()
                    # 503 names the source that did not answer in time (the designed answer to
                    # overload); any other 5xx, or a dropped connection, is a failure.
                    key = ("ok" if status < 400 else "refused" if status < 500
                           else "unavailable" if status == 503 else "failed")
                except (OSError, http.client.HTTPException):
                    key = "failed"
                with lock:
                    counts[key] += 1
        return run

    before, t0 = backend_queries(w), time.monotonic()
    threads = [threading.Thread(target=probe), threading.Thread(target=memory)]
    threads += [threading.Thread(target=counted(c)) for c in clients]
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    took = time.monotonic() - t0
    after = backend_queries(w)
    per_s = {k: round((after.get(k, 0) - before.get(k, 0)) / took, 2) for k in after}
    out = {"clients": len(clients), "seconds": round(took, 1), "answers": counts,
           "peak_rss_mib": round(max(rss) / 1024, 1) if rss else None,
           "readyz_p99_ms": round(percentile(readyz, 0.99) * 1000, 1) if readyz else None,
           "readyz_max_ms": round(max(readyz) * 1000, 1) if readyz else None,
           "backend_queries_per_s": per_s}
    w.log(f"  {name}: {out}")
    return out


def run(w):
    w.log("abuse: anonymous clients against one viewer's baseline")

    def viewer():
        r = w.get("/", timeout=30)
        time.sleep(1)
        return r.status

    def png():
        return w.get("/api/v1/reports/usage.png?range=90d&width=2400&height=2400", timeout=120).status

    def mixed():
        n = random.randint(1, 129600)
        path = random.choice([
            f"/?range={n}m", f"/api/v1/status", f"/api/v1/records/summary?window={n}m",
            f"/api/v1/adoption?range={n}m", f"/api/v1/reports/usage.csv?range={n}m", "/reports", "/rollback",
            f"/api/v1/records/series?range={n}m&step={random.randint(1, 1440)}m"])
        return w.get(path, timeout=60).status

    base = phase(w, "one viewer", 20, [viewer])
    abuse = phase(w, "8 largest PNGs and 50 mixed anonymous readers", 60, [png] * 8 + [mixed] * 50)
    ratio = {k: round(v / base["backend_queries_per_s"][k], 1) if base["backend_queries_per_s"].get(k) else None
             for k, v in abuse["backend_queries_per_s"].items()}
    w.FIGURES["abuse"] = {"baseline": base, "abuse": abuse, "backend_queries_ratio": ratio}
    w.check(abuse["peak_rss_mib"] is not None and abuse["peak_rss_mib"] < 200,
            f"abuse: peak memory {abuse['peak_rss_mib']} MiB (goal < 200; one viewer {base['peak_rss_mib']})")
    w.check(abuse["readyz_p99_ms"] is not None and abuse["readyz_p99_ms"] < 100,
            f"abuse: /readyz p99 {abuse['readyz_p99_ms']} ms under the load (goal < 100; one viewer {base['readyz_p99_ms']})")
    w.check(abuse["answers"]["failed"] == 0,
            f"abuse: no 5xx but 503 (a source named) and no dropped connection ({abuse['answers']})")
    # The kill still lands at once after the storm.
    operator = w.login("ana", "operator-demo")
    t0 = time.monotonic()
    r = w.post_json("/api/v1/rollout/kill", {"reason": "proof: kill after the abuse"}, operator)
    took = round(time.monotonic() - t0, 2)
    w.check(r.status == 200 and w.configmap_flag() == "0", f"abuse: an operator's kill right after it lands in {took} s")
    w.FIGURES["abuse"]["kill_after_s"] = took
