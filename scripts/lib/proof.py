#!/usr/bin/env python3
"""Proof under load and faults (docs/reliability.md), run by scripts/proof.

scripts/proof prepares a world of real parts (a private PostgreSQL cluster holding the diary and
the state database, a backfilled Prometheus data directory, the simulator and the release build)
and hands it over through environment variables. This program starts and stops the processes
itself, so that it can kill them, and checks every outcome: any failed check exits non-zero.

Modes: load, faults, soak, abuse, autopilot, all. Standard library only.
"""

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.parse

import proof_abuse
import proof_autopilot
import proof_load
import proof_notify
import proof_outage

ENV = os.environ
RUN = ENV["PROOF_RUN"]
REFRESH = int(ENV.get("PROOF_REFRESH_SECS", "5"))
SITE_PORT = int(ENV["PROOF_SITE_PORT"])
ORIGIN = f"http://127.0.0.1:{SITE_PORT}"
FAILURES = []
FIGURES = {}


def log(msg):
    print(f"\033[1m[{time.strftime('%H:%M:%S')}]\033[0m {msg}", file=sys.stderr, flush=True)


def check(ok, what):
    log(("ok    " if ok else "FAIL  ") + what)
    if not ok:
        FAILURES.append(what)
    return ok


# ------------------------------------------------------------------ processes


class Proc:
    def __init__(self, name, argv, env=None, cwd=None):
        self.name, self.argv, self.env, self.cwd = name, argv, env, cwd
        self.p = None
        self.starts = 0

    def start(self):
        self.starts += 1
        logf = open(os.path.join(RUN, f"{self.name}.log"), "ab")
        env = dict(os.environ)
        env.update(self.env or {})
        self.p = subprocess.Popen(self.argv, stdout=logf, stderr=subprocess.STDOUT, env=env, cwd=self.cwd,
                                  start_new_session=True)
        return self

    @property
    def pid(self):
        return self.p.pid

    def alive(self):
        return self.p is not None and self.p.poll() is None

    def kill(self, sig=signal.SIGKILL):
        if self.alive():
            os.kill(self.p.pid, sig)
            try:
                self.p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.kill(self.p.pid, signal.SIGKILL)
                self.p.wait()

    def rss_kb(self):
        try:
            with open(f"/proc/{self.p.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1])
        except OSError:
            return None
        return None


def pg_ctl(*args):
    subprocess.run(["runuser", "-u", "postgres", "--", os.path.join(ENV["PROOF_PGBIN"], "pg_ctl"),
                    "-D", ENV["PROOF_PGDATA"], *args], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def pg_stop():
    pg_ctl("stop", "-m", "fast", "-w")


def pg_start():
    pg_ctl("start", "-w", "-l", os.path.join(RUN, "pglog", "postgres.log"),
           "-o", f"-p {ENV['PROOF_PG_PORT']} -k {ENV['PROOF_PG_SOCKETS']} -c listen_addresses=127.0.0.1")


BIN = ENV["PROOF_BIN"]
PROMETHEUS = Proc("prometheus", [
    "prometheus", f"--config.file={RUN}/prometheus.yml", f"--storage.tsdb.path={RUN}/prometheus-data",
    "--storage.tsdb.retention.time=60d", f"--web.listen-address=127.0.0.1:{ENV['PROOF_PROM_PORT']}",
    "--log.level=warn"])
SIMULATOR = Proc("simulator", [
    f"{BIN}/diary-writer", "serve", "--rbac-role", f"{ENV['PROOF_REPO']}/deploy/role.yaml", "--listen", f"127.0.0.1:{ENV['PROOF_SIM_PORT']}",
    "--state-file", f"{RUN}/cluster.json", "--ready-delay-secs", "0.5", "--rate-per-replica", ENV.get("PROOF_SIM_RATE", "0.04")],
    env={"DATABASE_URL": ENV["PROOF_DIARY_URL"], "DEMO_KUBE_TOKEN": ENV["PROOF_KUBE_TOKEN"],
         "DEMO_GRAFANA_TOKEN": ENV["PROOF_GRAFANA_TOKEN"]})
ALERTMANAGER = Proc("alertmanager", [
    "prometheus-alertmanager", f"--config.file={RUN}/alertmanager.yml", f"--storage.path={RUN}/alertmanager-data",
    f"--web.listen-address=127.0.0.1:{ENV['PROOF_AM_PORT']}", "--cluster.listen-address=", "--log.level=warn"])
DASHBOARD = Proc("dashboard", [f"{BIN}/rollout-dashboard"], env={
    "DATABASE_URL": ENV["PROOF_DIARY_URL"], "STATE_DATABASE_URL": ENV["PROOF_STATE_URL"],
    "PROMETHEUS_URL": f"http://127.0.0.1:{ENV['PROOF_PROM_PORT']}", "KUBECONFIG": f"{RUN}/kubeconfig",
    "ROLLOUT_CONFIG": f"{RUN}/settings.toml", "LEPTOS_SITE_ADDR": f"127.0.0.1:{SITE_PORT}",
    "ROLLOUT_ALERT_HOOK_TOKEN": ENV["PROOF_HOOK_TOKEN"], "PROOF_GRAFANA_TOKEN": ENV["PROOF_GRAFANA_TOKEN"],
    "PROOF_WEBHOOK_KEY": ENV["PROOF_WEBHOOK_KEY"],
    "PROOF_SLACK_URL": f"http://127.0.0.1:{ENV['PROOF_SIM_PORT']}/stand-ins/slack/oncall",
    "RUST_LOG": "info"}, cwd=ENV["PROOF_REPO"])


# ------------------------------------------------------------------ HTTP


class Resp:
    def __init__(self, status, headers, body, seconds):
        self.status, self.headers, self.body, self.seconds = status, headers, body, seconds

    def json(self):
        return json.loads(self.body or b"null")

    def text(self):
        return self.body.decode("utf-8", "replace")


def request(port, method, path, body=None, headers=None, timeout=20):
    t0 = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        data = r.read()
        return Resp(r.status, {k.lower(): v for k, v in r.getheaders()}, data, time.monotonic() - t0)
    finally:
        conn.close()


def get(path, cookie=None, timeout=20, headers=None):
    h = dict(headers or {})
    if cookie:
        h["Cookie"] = cookie
    return request(SITE_PORT, "GET", path, headers=h, timeout=timeout)


def post_json(path, payload, cookie, timeout=30):
    return request(SITE_PORT, "POST", path, body=json.dumps(payload).encode(), timeout=timeout, headers={
        "Content-Type": "application/json", "Origin": ORIGIN, "Cookie": cookie})


def login(user, password):
    r = request(SITE_PORT, "POST", "/auth/login",
                body=urllib.parse.urlencode({"username": user, "password": password}).encode(),
                headers={"Content-Type": "application/x-www-form-urlencoded", "Origin": ORIGIN})
    cookie = r.headers.get("set-cookie", "").split(";")[0]
    if r.status != 303 or "=" not in cookie or cookie.endswith("="):
        raise RuntimeError(f"sign-in as {user} failed: HTTP {r.status} {r.headers.get('location')}")
    return cookie


def wait_until(what, predicate, limit, step=0.25):
    """Seconds until predicate() held, or None after limit seconds."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        try:
            if predicate():
                return time.monotonic() - t0
        except (OSError, http.client.HTTPException, ValueError):
            pass
        time.sleep(step)
    log(f"gave up waiting for {what} after {limit} s")
    return None


def start_dashboard():
    DASHBOARD.start()
    took = wait_until("the dashboard to be ready", lambda: get("/readyz", timeout=2).status == 200, 90)
    if took is None:
        raise RuntimeError("the dashboard did not become ready; see dashboard.log")
    return took


def start_world():
    ALERTMANAGER.start()
    wait_until("Alertmanager", lambda: request(int(ENV["PROOF_AM_PORT"]), "GET", "/-/ready", timeout=2).status == 200, 60)
    PROMETHEUS.start()
    wait_until("Prometheus", lambda: request(int(ENV["PROOF_PROM_PORT"]), "GET", "/-/ready", timeout=2).status == 200, 60)
    SIMULATOR.start()
    wait_until("the simulator", lambda: request(int(ENV["PROOF_SIM_PORT"]), "GET", "/metrics", timeout=2).status == 200, 30)
    start_dashboard()


def stop_world():
    for p in (DASHBOARD, SIMULATOR, PROMETHEUS, ALERTMANAGER):
        p.kill(signal.SIGTERM)


def status():
    return get("/api/v1/status", timeout=15).json()


def configmap_flag():
    r = request(int(ENV["PROOF_SIM_PORT"]), "GET", "/api/v1/namespaces/diabetes/configmaps/feature-flags",
                headers={"Authorization": f"Bearer {ENV['PROOF_KUBE_TOKEN']}"}, timeout=5)
    return r.json()["data"]["insulin_dose_split"]


def set_kube_fault(fault):
    r = request(int(ENV["PROOF_SIM_PORT"]), "POST", "/__emulator/fault", body=json.dumps(fault).encode(),
                headers={"Content-Type": "application/json"}, timeout=5)
    assert r.status == 200, r.status


# ------------------------------------------------------------------ the audit ledger


class Ledger:
    """Every control request sent, with its request id and answer, to compare with the audit trail."""

    def __init__(self):
        self.sent = []  # (request_id or None, status or None, payload)
        self.lock = threading.Lock()

    def control(self, cookie, path, payload):
        try:
            r = post_json(path, payload, cookie)
            rid, st = r.headers.get("x-request-id"), r.status
        except (OSError, http.client.HTTPException):
            r, rid, st = None, None, None
        with self.lock:
            self.sent.append((rid, st, payload))
        return r

    def set_percentage(self, cookie, p, reason):
        version = None
        try:
            version = get("/api/v1/rollout", cookie=cookie, timeout=15).json().get("version")
        except (OSError, http.client.HTTPException, ValueError, AttributeError):
            pass
        return self.control(cookie, "/api/v1/rollout", {
            "percentage": p, "reason": reason, "expected_version": version or "unknown",
            "override_guards": True, "override_reason": "proof run"})


def audit_entries(cookie):
    r = get("/api/v1/audit?limit=10000", cookie=cookie, timeout=30)
    assert r.status == 200, r.status
    return r.json()


def check_ledger(ledger, cookie, what):
    entries = audit_entries(cookie)
    by_id = {}
    for e in entries:
        if e.get("request_id"):
            by_id.setdefault((e["request_id"], e["action"]), []).append(e)
    dups = {k: len(v) for k, v in by_id.items() if len(v) > 1}
    check(not dups, f"{what}: no audit entry is duplicated ({len(entries)} entries)" + (f": {dups}" if dups else ""))
    answered = [(rid, st, p) for rid, st, p in ledger.sent if rid]
    missing = [rid for rid, st, p in answered if not any(k[0] == rid for k in by_id)]
    check(not missing, f"{what}: each of the {len(answered)} answered control requests has its audit entry"
          + (f"; missing {missing[:5]}" if missing else ""))
    done_wrong = []
    for rid, st, p in answered:
        if st == 200 and "percentage" in p:
            e = next((e for k, v in by_id.items() if k[0] == rid for e in v), None)
            if not e or e["outcome"] != "done" or e.get("value_after") != str(p["percentage"]):
                done_wrong.append(rid)
    check(not done_wrong, f"{what}: every acknowledged change is audited as done with its value")
    # Requests whose answer was lost (sent as the dashboard was killed): at most one entry each,
    # found by their reason; the journal records a change it began as "failed: interrupted".
    lost = [p for rid, st, p in ledger.sent if not rid]
    lost_entries = []
    for p in lost:
        found = [e for e in entries if e.get("reason") == p.get("reason")]
        lost_entries += [f"{e['action']} {e['outcome']}" + (" (interrupted)" if "interrupted" in (e.get("outcome_detail") or "") else "")
                         for e in found]
        check(len(found) <= 1, f"{what}: a request that got no answer ({p.get('reason')}: sent while the dashboard was down, or cut at the kill) has at most one entry ({len(found)})")
    FIGURES.setdefault("lost_requests", []).extend(lost_entries or ["none recorded"] * len(lost))
    return len(entries), len(lost)


# ------------------------------------------------------------------ faults


def source_failing(st, source):
    return source in (st.get("failing_since") or {})


def fault_round(name, source, apply, restore, affected, unaffected, operator):
    """Applies a fault, checks the page and the panels while it lasts, restores, checks recovery."""
    log(f"fault: {name}")
    apply()
    t0 = time.monotonic()
    detected = wait_until(f"{source} to be reported failing", lambda: source_failing(status(), source),
                          2 * REFRESH + 15)
    check(detected is not None, f"{name}: the status reports {source} failing ({detected and round(detected, 1)} s)")
    st = status()
    check(all(st_field(st, f) for f in affected), f"{name}: the affected panels say why ({', '.join(affected)})")
    check(all(not st_field(st, f) for f in unaffected), f"{name}: the other panels keep working ({', '.join(unaffected)})")
    page = get("/", timeout=30)
    check(page.status == 200 and "Failing since" in page.text(),
          f"{name}: the overview answers ({page.seconds:.2f} s) and names the failure")
    held = time.monotonic() - t0
    restore()
    t1 = time.monotonic()
    recovered = wait_until(f"{source} to recover", lambda: not source_failing(status(), source), 2 * REFRESH + 30)
    check(recovered is not None and recovered <= 2 * REFRESH,
          f"{name}: recovered by itself in {recovered and round(recovered, 1)} s (limit two refresh intervals, {2 * REFRESH} s)")
    FIGURES.setdefault("faults", []).append({"fault": name, "detected_s": detected and round(detected, 1),
                                             "held_s": round(held, 1), "recovered_s": recovered and round(recovered, 1),
                                             "page_s": round(page.seconds, 2)})


def st_field(st, path):
    v = st
    for part in path.split("."):
        v = (v or {}).get(part)
    return v


def kill_under_load(ledger, operator):
    """SIGKILL while viewers load the pages and an operator changes the rollout."""
    log("fault: the dashboard killed with SIGKILL under load, with changes in flight")
    load = subprocess.Popen(["wrk", "-t2", "-c50", "-d25s", "--timeout", "5s", f"{ORIGIN}/"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    stop = threading.Event()
    cookie = {"v": operator}

    def changes():
        p, n = 10, 0
        while not stop.is_set():
            p, n = (10 if p >= 30 else p + 1), n + 1
            if ledger.set_percentage(cookie["v"], p, f"proof: change #{n}, to {p}") is None:
                time.sleep(0.2)  # the dashboard is down: try again shortly

    t = threading.Thread(target=changes)
    t.start()
    time.sleep(6)
    DASHBOARD.kill(signal.SIGKILL)
    killed = time.monotonic()
    log("  killed; restarting")
    took = start_dashboard()
    log(f"  ready again {time.monotonic() - killed:.1f} s after the kill (start took {took:.1f} s)")
    time.sleep(4)
    stop.set()
    t.join()
    load.wait()
    # The journal is replayed at start; give it one refresh interval to be sure.
    time.sleep(REFRESH + 1)
    FIGURES["sigkill_under_load"] = {"restart_s": round(took, 1), "changes_sent": len(ledger.sent)}


def run_faults():
    operator = login("ana", "operator-demo")
    ledger = Ledger()
    check(not status().get("failing_since"), "before the faults every source answers")
    ledger.set_percentage(operator, 20, "proof: before the faults")

    fault_round("Prometheus killed and restarted", "prometheus",
                lambda: PROMETHEUS.kill(signal.SIGKILL),
                lambda: (PROMETHEUS.start(), wait_until("Prometheus", lambda: request(int(ENV["PROOF_PROM_PORT"]), "GET", "/-/ready", timeout=2).status == 200, 60)),
                ["metrics.error"], ["flag.error", "records_24h.error", "writer.error"], operator)
    ledger.set_percentage(operator, 21, "proof: between faults")

    def pg_down():
        pg_stop()
        # A change attempted while the state database is down: refused or made, but never lost.
        ledger.set_percentage(operator, 22, "proof: while PostgreSQL is down")
        proof_outage.kills(sys.modules[__name__], operator)

    fault_round("PostgreSQL (diary and state) stopped and started", "diary_database",
                pg_down, pg_start, ["records_24h.error", "schema.error"], ["flag.error", "metrics.error"], operator)
    check(get("/readyz").status == 200, "after PostgreSQL is back the dashboard is ready again")
    operator = login("ana", "operator-demo")
    proof_outage.audited(sys.modules[__name__], operator)
    ledger.set_percentage(operator, 23, "proof: after PostgreSQL")

    fault_round("Kubernetes emulation answering 500", "kubernetes",
                lambda: set_kube_fault("error"), lambda: set_kube_fault("none"),
                ["flag.error", "writer.error"], ["metrics.error", "records_24h.error"], operator)

    def hang():
        set_kube_fault("hang")
        # A change while Kubernetes hangs: answered within the source timeout, not left hanging.
        r = ledger.set_percentage(operator, 24, "proof: while Kubernetes hangs")
        check(r is not None and r.status in (502, 503, 504) and r.seconds < 15,
              f"a change while Kubernetes hangs is refused in {r and round(r.seconds, 1)} s (HTTP {r and r.status})")

    fault_round("Kubernetes emulation hanging", "kubernetes", hang, lambda: set_kube_fault("none"),
                ["flag.error", "writer.error"], ["metrics.error", "records_24h.error"], operator)
    check(configmap_flag() == "23", "the flag holds the last change that was made (23)")

    kill_under_load(ledger, operator)
    operator = login("ana", "operator-demo")
    entries, unanswered = check_ledger(ledger, operator, "after all faults")
    flag = configmap_flag()
    answered_values = [str(p["percentage"]) for rid, st, p in ledger.sent if st == 200]
    last_sent = [str(p["percentage"]) for rid, st, p in ledger.sent][-3:]
    check(flag in answered_values[-1:] + last_sent, f"the flag ({flag}) is the last acknowledged change or one in flight at the kill")
    FIGURES["audit"] = {"control_requests": len(ledger.sent), "unanswered_at_kill": unanswered, "audit_entries": entries}
    run_autopilot_kill()
    run_rollback_kill()
    proof_notify.run(sys.modules[__name__])


def run_autopilot_kill():
    """SIGKILL of the replica driving an autopilot plan, mid-plan: the restarted dashboard carries
    the plan on, and each step's flag write happens exactly once."""
    log("fault: the dashboard killed with SIGKILL while its autopilot drives a plan")
    op = login("ana", "operator-demo")
    steps = [{"percentage": 30, "bake_secs": 20}, {"percentage": 35, "bake_secs": 10}]
    r = post_json("/api/v1/autopilot", {"reason": "proof: SIGKILL of the driving replica", "steps": steps,
                                        "override_guards_reason": "proof world: earlier faults left guards failing"}, op)
    check(r.status == 200, f"the plan starts (HTTP {r.status} {r.text()[:300]})")
    if r.status != 200:
        return
    plan_id = r.json()["plan"]["id"]

    def plan():
        return get("/api/v1/autopilot", cookie=op, timeout=10).json()["plan"]

    wait_until("step 1 to be written", lambda: configmap_flag().rstrip("%") == "30", 60)
    time.sleep(3)  # inside step 1's bake time
    check(plan()["current_step"] == 0, "the plan is baking step 1 when the dashboard is killed")
    DASHBOARD.kill(signal.SIGKILL)
    killed = time.monotonic()
    start_dashboard()
    op = login("ana", "operator-demo")
    took = wait_until("the restarted dashboard to finish the plan",
                      lambda: plan()["state"] in ("done", "paused", "killed", "aborted"), 120, 1)
    p = plan()
    check(p["id"] == plan_id and p["state"] == "done",
          f"the restarted dashboard finishes the plan ({p['state']}: {p.get('pause_reason')})")
    check(configmap_flag().rstrip("%") == "35", f"the flag holds the last step ({configmap_flag()})")
    entries = audit_entries(op)
    mine = [e for e in entries if e["actor"] == "autopilot" and e["action"] == "flag.set"
            and f"autopilot plan #{plan_id}," in (e.get("reason") or "")]
    written = sorted(e.get("value_after") for e in mine)
    check(written == ["30", "35"], f"each step's flag write is audited exactly once ({written})")
    steps_done = [e for e in entries if e["action"] == "autopilot.step" and e["outcome"] == "done"]
    check(len(steps_done) == 2, f"two 'step reached' entries ({len(steps_done)})")
    FIGURES["sigkill_autopilot"] = {"plan": p["state"], "flag_writes": written,
                                    "kill_to_done_s": round(time.monotonic() - killed, 1) if took else None}


def run_rollback_kill():
    """SIGKILL during a rollback run: the run resumes where it stopped, nothing done twice."""
    log("fault: the dashboard killed with SIGKILL during a rollback run")
    op = login("ana", "operator-demo")
    r = post_json("/api/v1/deploys", {"revision": "b7e9d1c0f2a3", "previous_revision": "a1f3c2d4e5b6",
                                      "note": "proof run"}, op)
    check(r.status == 200, f"the deploy journal takes the previous revision (HTTP {r.status} {r.text()[:200]})")
    plan = post_json("/api/v1/rollback/plan", {}, op).json()
    rows = plan.get("data_loss_rows")
    r = post_json("/api/v1/rollback", {"reason": "proof: SIGKILL during a rollback", "confirm_environment": "proof",
                                       "acknowledge_data_loss_rows": rows, "restore_data": False}, op)
    check(r.status == 200, f"the rollback starts (HTTP {r.status} {r.text()[:300]})")
    if r.status != 200:
        return
    run_id = r.json()["id"]

    def step_state(name):
        run = get(f"/api/v1/rollback/{run_id}", cookie=op, timeout=10).json()
        return next(s["state"] for s in run["steps"] if s["name"] == name), run

    # The downgrade wrapper migrates and then holds for a while: kill while the downgrade runs.
    wait_until("the downgrade to run", lambda: step_state("schema_downgrade")[0] == "running", 60)
    time.sleep(5)
    DASHBOARD.kill(signal.SIGKILL)
    start_dashboard()
    op = login("ana", "operator-demo")
    st, run = step_state("schema_downgrade")
    check(run["state"] == "interrupted" and st in ("running", "interrupted"),
          f"after the restart the run is interrupted at the downgrade ({run['state']}, schema_downgrade {st})")
    r = post_json(f"/api/v1/rollback/{run_id}/retry", {}, op)
    check(r.status == 200, f"retry is accepted (HTTP {r.status})")
    wait_until("the run to finish", lambda: step_state("stop_writers")[1]["state"] in ("done", "failed", "aborted"), 180, 1)
    run = step_state("stop_writers")[1]
    check(run["state"] == "done", f"the resumed run is done ({run['state']})")
    attempts = [s.get("attempts") for s in run["steps"]]
    check(all(a is not None and a <= 2 for a in attempts) and attempts[:3] == [1, 1, 1],
          f"steps before the kill ran once ({attempts})")
    entries = [e for e in audit_entries(op) if e["action"] == "rollback.step"]
    done_steps = [s["index"] for s in run["steps"] if s["state"] == "done"]
    for idx in done_steps:
        n = sum(1 for e in entries if (e.get("value_after") or "").startswith(f"step {idx} ") and ": done in" in e["value_after"])
        check(n == 1, f"step {idx}: one 'done' audit entry ({n})")
    interrupted = [e for e in entries if (e.get("value_after") or "").endswith(": interrupted")]
    check(len(interrupted) == 1, f"one 'interrupted' audit entry ({len(interrupted)})")
    FIGURES["sigkill_rollback"] = {"attempts": attempts, "run": run["state"]}


# ------------------------------------------------------------------ soak


def run_soak(minutes):
    viewers = 20
    log(f"soak: {viewers} viewers refreshing every {REFRESH} s for {minutes} min, the simulator writing")
    stop = threading.Event()
    counts = {"ok": 0, "bad": 0}
    lock = threading.Lock()

    def viewer(i):
        paths = ["/", "/api/v1/status", "/reports" if i % 4 == 0 else "/api/v1/records/summary"]
        while not stop.is_set():
            for p in paths:
                try:
                    ok = get(p, timeout=30).status == 200
                except (OSError, http.client.HTTPException):
                    ok = False
                with lock:
                    counts["ok" if ok else "bad"] += 1
            stop.wait(REFRESH)

    threads = [threading.Thread(target=viewer, args=(i,)) for i in range(viewers)]
    for t in threads:
        t.start()
        time.sleep(REFRESH / viewers)
    samples = []
    t0 = time.monotonic()
    warmup = 120
    while time.monotonic() - t0 < minutes * 60:
        samples.append((time.monotonic() - t0, DASHBOARD.rss_kb()))
        time.sleep(10)
    stop.set()
    for t in threads:
        t.join()
    # Means over a minute (six samples) at each end, so that one noisy sample decides nothing.
    after_warmup = [v for s, v in samples if s >= warmup]
    base = sum(after_warmup[:6]) / len(after_warmup[:6])
    end = sum(after_warmup[-6:]) / len(after_warmup[-6:])
    growth = (end - base) / base
    FIGURES["soak"] = {"minutes": minutes, "viewers": viewers, "requests": counts, "rss_kb_after_warmup": round(base),
                       "rss_kb_end": round(end), "growth": round(growth, 4),
                       "rss_samples_kb": [v for _, v in samples]}
    log(f"  {counts['ok']} answers, {counts['bad']} errors; memory after warm-up {base / 1024:.1f} MiB, at the end "
        f"{end / 1024:.1f} MiB ({growth * 100:+.1f} %)")
    check(counts["bad"] == 0, "soak: no error responses")
    check(growth < 0.10, f"soak: memory growth after warm-up {growth * 100:+.1f} % (limit 10 %)")


# ------------------------------------------------------------------ secrets


def check_secrets():
    """The world's secrets (the Kubernetes token, the users' passwords, the connection strings)
    appear in none of the dashboard's logs and none of its pages and API answers."""
    secrets = [ENV["PROOF_KUBE_TOKEN"], "operator-demo", "viewer-demo", ENV["PROOF_DIARY_URL"], ENV["PROOF_STATE_URL"],
               ENV["PROOF_HOOK_TOKEN"], ENV["PROOF_GRAFANA_TOKEN"], ENV["PROOF_WEBHOOK_KEY"]]
    logs = [os.path.join(RUN, f) for f in os.listdir(RUN) if f.startswith("dashboard") and f.endswith(".log")]
    text = "".join(open(f, errors="replace").read() for f in logs)
    found = [s[:8] + "…" for s in secrets if s in text]
    check(not found, f"no secret in the dashboard's log ({len(text.splitlines())} lines)" + (f": {found}" if found else ""))
    op = login("ana", "operator-demo")
    pages = ["/", "/rollout", "/rollback", "/autopilot", "/reports", "/audit", "/login", "/api/v1/status", "/api/v1/rollout", "/api/v1/autopilot",
             "/api/v1/rollback", "/api/v1/audit", "/api/v1/deploys", "/metrics", "/api/v1/flag/history",
             "/api/v1/notifications"]
    bodies = ""
    for p in pages:
        r = get(p, cookie=op, timeout=30)
        bodies += r.text()
        for h, v in r.headers.items():
            bodies += f"{h}: {v}\n"
    r = post_json("/api/v1/rollback/plan", {}, op)
    bodies += r.text()
    found = [s[:8] + "…" for s in secrets if s in bodies]
    check(not found, f"no secret in {len(pages) + 1} pages and API answers as an operator ({len(bodies) // 1024} KiB)"
          + (f": {found}" if found else ""))
    FIGURES["secrets"] = {"log_lines": len(text.splitlines()), "pages": len(pages) + 1}


def main():
    mode = sys.argv[1] if len(sys.argv) > 1 else "all"
    soak_minutes = float(ENV.get("PROOF_SOAK_MINUTES", "15"))
    start_world()
    try:
        if mode in ("load", "all"):
            proof_load.run(sys.modules[__name__])
        if mode in ("soak", "all"):
            run_soak(soak_minutes)
        if mode in ("autopilot", "all"):
            proof_autopilot.run(sys.modules[__name__])
        if mode in ("faults", "all"):
            run_faults()
        if mode in ("abuse", "all"):
            proof_abuse.run(sys.modules[__name__])
        check_secrets()
    finally:
        stop_world()
        with open(os.path.join(RUN, "figures.json"), "w") as f:
            json.dump(FIGURES, f, indent=2)
        log(f"figures: {RUN}/figures.json")
    if FAILURES:
        log(f"{len(FAILURES)} check(s) failed:")
        for f in FAILURES:
            log(f"  - {f}")
        sys.exit(1)
    log("every check passed")


if __name__ == "__main__":
    main()
