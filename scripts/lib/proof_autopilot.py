"""The autopilot soak of `scripts/proof autopilot` (issue 30), run by scripts/lib/proof.py with
that module as `w` (its processes, HTTP helpers and checks).

The demo's default plan (its percentages, bakes compressed to seconds) runs several times on the
demo's traffic with every check acting for real: the simulator's patients write at twice the
demo's rate (skewed users, the split path logging more entries per user), Prometheus scrapes
them and fires the demo's rules, sample_ratio reads users from the diary. Every plan must reach
100 % with no pause. Then four faults, each injected into a running plan and each to be caught:
writers stuck at 5 % under a 25 % flag, a doubled-dose client at an unannounced moment, a
person's kill during a round, and a kill that cannot be written.
"""

import json
import random
import re
import time

import proof_outage

# The soak's schedule: rounds every 2 s, a step's users judged after a 10 s grace and a mismatch
# acted on once the window holds 60 s, the legacy share after 10 s with 150 writes, the guide's
# target watched for 40 s at 100 %.
SCHEDULE = {"interval_secs": 2, "sample_ratio_grace_secs": 10, "sample_ratio_min_window_secs": 60,
            "legacy_grace_secs": 10, "legacy_min_writes": 150, "watch_secs": 40, "inconclusive_secs": 300}
BAKE_SECS = 10
VISITS_PER_REPLICA = 1.6  # twice the demo's: no surge against the demo's seeded history
OVERRIDE = "proof world: the seeded history keeps doubled records from the last days"
FINAL = ("done", "paused", "killed", "aborted")


def soak_settings(w):
    """The world's settings with every check acting (the faults mode's dry runs removed) and the
    soak's schedule in [autopilot]."""
    out, section, seen = [], None, set()
    with open(f"{w.RUN}/settings.toml") as f:
        lines = f.read().splitlines()
    for line in lines:
        header = re.match(r"^\[\[?([^\]]+)\]\]?\s*$", line)
        if header:
            if section == "autopilot":
                out.extend(f"{k} = {v}" for k, v in SCHEDULE.items() if k not in seen)
                seen.update(SCHEDULE)
            section = header.group(1)
        if section == "autopilot.actions":
            continue
        key = re.match(r"^(\w+)\s*=", line)
        if section == "autopilot" and key and key.group(1) in SCHEDULE:
            line = f"{key.group(1)} = {SCHEDULE[key.group(1)]}"
            seen.add(key.group(1))
        out.append(line)
    path = f"{w.RUN}/settings-autopilot.toml"
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")
    return path


def sim(w, path, payload):
    r = w.request(int(w.ENV["PROOF_SIM_PORT"]), "POST", path, body=json.dumps(payload).encode(),
                  headers={"Content-Type": "application/json"}, timeout=5)
    assert r.status == 200, (path, r.status)


def view(w, op):
    return w.get("/api/v1/autopilot", cookie=op, timeout=10).json()


def step_of(w, op, plan_id):
    """The step a running plan is at (-1 before its first), or -2 when it is not running."""
    plan = view(w, op)["plan"]
    running = plan is not None and plan["id"] == plan_id and plan["state"] == "running"
    return plan["current_step"] if running else -2


def start(w, op, steps, reason):
    proof_outage.set_flag_as_kubectl(w, "25%")
    r = w.post_json("/api/v1/autopilot", {"reason": reason, "steps": steps, "override_guards_reason": OVERRIDE}, op)
    if not w.check(r.status == 200, f"{reason}: the plan starts (HTTP {r.status} {r.text()[:300]})"):
        return None
    return r.json()["plan"]["id"]


def follow(w, op, plan_id, limit, on_tick=None):
    """Polls the plan every second until it ends or pauses: (its last view, the flag values seen)."""
    flags, t0, plan = set(), time.monotonic(), None
    while time.monotonic() - t0 < limit:
        plan = view(w, op)["plan"]
        flags.add(w.configmap_flag())
        if plan is None or plan["id"] != plan_id or plan["state"] in FINAL:
            break
        if on_tick:
            on_tick(plan, time.monotonic() - t0)
        time.sleep(1)
    return plan, flags


def end(w, op, plan_id):
    """Aborts the plan if it is still active."""
    plan = view(w, op)["plan"]
    if plan and plan["id"] == plan_id and plan["state"] in ("running", "paused"):
        w.post_json("/api/v1/autopilot/abort", {"reason": "proof: the fault was caught"}, op)


def healthy_plans(w, op, steps, count):
    figures = []
    for i in range(1, count + 1):
        t0 = time.monotonic()
        plan_id = start(w, op, steps, f"proof soak: the default plan, round {i} of {count}")
        if plan_id is None:
            continue
        plan, flags = follow(w, op, plan_id, 600)
        took = round(time.monotonic() - t0)
        state = plan["state"] if plan else None
        w.check(state == "done", f"soak plan {i} of {count} reaches 100 % on its own in {took} s "
                                 f"({state}: {plan and plan.get('pause_reason')})")
        w.check(w.configmap_flag() == "100%", f"soak plan {i}: the flag ends at 100 % ({w.configmap_flag()})")
        figures.append({"plan": plan_id, "state": state, "seconds": took, "pause": plan and plan.get("pause_reason"),
                        "flags_seen": sorted(flags)})
        end(w, op, plan_id)
    return figures


def stuck_writers(w, op, steps):
    """Writers stuck at 5 % under a 25 % flag: the plan pauses on sample_ratio or legacy_share
    and never raises the flag."""
    sim(w, "/__emulator/stuck", {"percent": 5})
    try:
        plan_id = start(w, op, steps, "proof fault: writers stuck at 5 %")
        if plan_id is None:
            return None
        t0 = time.monotonic()
        plan, flags = follow(w, op, plan_id, 240)
        took = round(time.monotonic() - t0)
        reason = (plan or {}).get("pause_reason") or ""
        w.check(plan and plan["state"] == "paused" and re.search(r"sample_ratio|legacy_share", reason),
                f"stuck writers pause the plan on a traffic check in {took} s ({plan and plan['state']}: {reason})")
        w.check(flags <= {"25%"}, f"stuck writers: the flag never left 25 % ({sorted(flags)})")
        end(w, op, plan_id)
        return {"seconds_to_pause": took, "reason": reason}
    finally:
        sim(w, "/__emulator/stuck", {"percent": None})


def doubled_at_random(w, op, steps):
    """A doubled-dose client appears at an unannounced moment of a running plan: the flag at 0 %."""
    plan_id = start(w, op, steps, "proof fault: a doubled-dose client at an unannounced moment")
    if plan_id is None:
        return None
    at = random.uniform(5, 90)
    injected = {}

    def inject(plan, elapsed):
        if not injected and elapsed >= at:
            sim(w, "/__emulator/doubled", {"percent": 20})
            injected.update(t=time.monotonic(), step=plan["current_step"], state=plan["state"])

    try:
        plan, _ = follow(w, op, plan_id, 240, inject)
        if not w.check(bool(injected), f"the doubled-dose client was injected {at:.0f} s into the plan"):
            return None
        took = w.wait_until("the flag at 0 %", lambda: w.configmap_flag() == "0%", 30, 0.1)
        w.check(took is not None, f"a doubled-dose client at {at:.0f} s (step {injected['step'] + 1}) "
                                  f"kills the flag: {w.configmap_flag()} after {time.monotonic() - injected['t']:.1f} s")
        plan = view(w, op)["plan"]
        w.check(plan["id"] == plan_id and plan["state"] == "killed", f"the plan ends killed ({plan['state']})")
        return {"injected_after_s": round(at), "step": injected["step"] + 1,
                "seconds_to_0": round(time.monotonic() - injected["t"], 1)}
    finally:
        sim(w, "/__emulator/doubled", {"percent": 0})


def persons_kill(w, op, steps):
    """A person's kill while the plan's rounds run (step 2 baking): the flag at 0 %, the plan
    ended, and no automatic flag write after the kill."""
    plan_id = start(w, op, steps, "proof fault: a person's kill during a round")
    if plan_id is None:
        return None
    reached = w.wait_until("step 2", lambda: step_of(w, op, plan_id) >= 1, 240)
    if not w.check(reached is not None, "the plan reaches step 2 before the person's kill"):
        end(w, op, plan_id)
        return None
    reason = f"proof: a person's kill during plan #{plan_id}'s rounds"
    r = w.post_json("/api/v1/rollout/kill", {"reason": reason}, op)
    w.check(r.status == 200, f"the person's kill answers 200 (HTTP {r.status} {r.text()[:200]})")
    ended = w.wait_until("the plan ends killed", lambda: view(w, op)["plan"]["state"] == "killed", 20)
    w.check(ended is not None, f"the plan ends killed ({view(w, op)['plan']['state']})")
    # Five rounds and more: nothing raises the flag again.
    flags = set()
    for _ in range(12):
        flags.add(w.configmap_flag())
        time.sleep(1)
    w.check(flags == {"0%"}, f"after the person's kill the flag stays at 0 % ({sorted(flags)})")
    entries = w.audit_entries(op)
    kills = [e["id"] for e in entries if e["action"] == "flag.kill" and e.get("reason") == reason]
    w.check(len(kills) == 1, f"the person's kill is audited once ({len(kills)})")
    later = [e for e in entries if kills and e["id"] > kills[0] and e["actor"] == "autopilot"
             and e["action"] == "flag.set" and e["outcome"] == "done"]
    w.check(not later, f"no automatic flag write after the kill ({[e.get('value_after') for e in later]})")
    return {"plan": plan_id, "flags_after": sorted(flags)}


def kill_not_written(w, op, steps):
    """A doubled dose while the API server refuses every write: the failing kill is loud (a
    critical event to the receivers, RolloutKillFailing in Alertmanager, the red line on the
    autopilot page), retried every round, and lands once the API server works again."""
    plan_id = start(w, op, steps, "proof fault: a kill that cannot be written")
    if plan_id is None:
        return None
    w.wait_until("step 1", lambda: step_of(w, op, plan_id) >= 0, 60)
    before = len(received_events(w, "flag.kill_failed"))
    w.set_kube_fault("error")
    sim(w, "/__emulator/doubled", {"percent": 20})
    t0 = time.monotonic()
    try:
        pending = w.wait_until("the page's red line", lambda: view(w, op)["pending_kills"], 60)
        w.check(pending is not None, f"the autopilot page shows the kill that has not landed "
                                     f"({view(w, op)['pending_kills'][:1]})")
        told = w.wait_until("the receivers told", lambda: len(received_events(w, "flag.kill_failed")) > before, 60)
        w.check(told is not None, "the webhook receiver got the critical flag.kill_failed event")
        alerted = w.wait_until("RolloutKillFailing in Alertmanager", lambda: alertmanager_has(w, "RolloutKillFailing"), 60)
        w.check(alerted is not None, "Alertmanager holds RolloutKillFailing while the kill has not landed")
    finally:
        w.set_kube_fault("none")
    restored = time.monotonic()
    landed = w.wait_until("the retried kill lands", lambda: w.configmap_flag() == "0%", 30, 0.2)
    w.check(landed is not None, f"once the API server works again the kill lands ({w.configmap_flag()}, "
                                f"{time.monotonic() - restored:.1f} s after)")
    cleared = w.wait_until("the red line goes", lambda: not view(w, op)["pending_kills"], 30)
    w.check(cleared is not None, "the page's red line goes once the kill landed")
    sim(w, "/__emulator/doubled", {"percent": 0})
    return {"failing_s": round(restored - t0, 1), "landed_after_restore_s": landed and round(landed, 1)}


def received_events(w, event):
    r = w.request(int(w.ENV["PROOF_SIM_PORT"]), "GET", "/stand-ins/received?target=webhook", timeout=5)
    return [x for x in r.json() if isinstance(x.get("body"), dict) and x["body"].get("event") == event]


def alertmanager_has(w, name):
    r = w.request(int(w.ENV["PROOF_AM_PORT"]), "GET", f"/api/v2/alerts?filter=alertname%3D%22{name}%22", timeout=5)
    return r.status == 200 and len(r.json()) > 0


def run(w):
    op = w.login("ana", "operator-demo")
    defaults = view(w, op)["defaults"]
    steps = [{"percentage": s["percentage"], "bake_secs": BAKE_SECS} for s in defaults]
    w.check([s["percentage"] for s in steps] == [25, 50, 100], f"the demo's default plan ({steps})")
    count = int(w.ENV.get("PROOF_AUTOPILOT_PLANS", "3"))
    w.log(f"autopilot soak: the default plan {count} times with {BAKE_SECS} s bakes, every check acting, "
          f"then four faults")
    settings = soak_settings(w)
    w.DASHBOARD.kill(w.signal.SIGTERM)
    w.DASHBOARD.env["ROLLOUT_CONFIG"] = settings
    w.start_dashboard()
    sim(w, "/__emulator/traffic", {"per_replica_per_s": VISITS_PER_REPLICA})
    op = w.login("ana", "operator-demo")
    figures = {}
    try:
        figures["plans"] = healthy_plans(w, op, steps, count)
        figures["stuck_writers"] = stuck_writers(w, op, steps)
        figures["doubled_dose"] = doubled_at_random(w, op, steps)
        figures["persons_kill"] = persons_kill(w, op, steps)
        figures["kill_not_written"] = kill_not_written(w, op, steps)
    finally:
        w.FIGURES["autopilot_soak"] = figures
        sim(w, "/__emulator/traffic", {"per_replica_per_s": float(w.ENV.get("PROOF_SIM_RATE", "0.04"))})
        w.DASHBOARD.kill(w.signal.SIGTERM)
        w.DASHBOARD.env["ROLLOUT_CONFIG"] = f"{w.RUN}/settings.toml"
        w.start_dashboard()
