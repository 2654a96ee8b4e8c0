"""The notifications' part of `scripts/proof faults` (issue 16), run by scripts/lib/proof.py with
that module as `w` (its processes, HTTP helpers and checks):

- a webhook receiver down for a minute gets every event of that minute afterwards, in order,
  each once;
- the dashboard killed with SIGKILL while a delivery is in flight (the action done, its delivery
  not): after the restart the event is delivered, once;
- a Prometheus rule on legacy usage fires (old clients surge), the real Alertmanager calls the
  dashboard's hook, the flag goes to 0 % with the alert in the audit trail; the Slack and Grafana
  stand-ins show the kill and Alertmanager holds the dashboard's own RolloutKilled alert.
"""

import json
import signal
import time


def sim(w, method, path, payload=None):
    body = json.dumps(payload).encode() if payload is not None else None
    return w.request(int(w.ENV["PROOF_SIM_PORT"]), method, path, body=body,
                     headers={"Content-Type": "application/json"}, timeout=10)


def received(w, target):
    return sim(w, "GET", f"/stand-ins/received?target={target}").json()


def accepted_ids(w, target="webhook"):
    """The audit ids of the events the webhook stand-in accepted (2xx), in arrival order."""
    return [r["body"]["id"] for r in received(w, target) if 200 <= r["status"] < 300]


def events_after(w, cookie, after_id):
    """The audit ids after `after_id` that are events the webhook takes (every event, done)."""
    names = {"flag.set", "flag.kill", "flag.external_change"}
    return sorted(e["id"] for e in w.audit_entries(cookie)
                  if e["id"] > after_id and e["action"] in names and e["outcome"] == "done")


def newest_audit_id(w, cookie):
    return max((e["id"] for e in w.audit_entries(cookie)), default=0)


def run(w):
    w.log("notifications: a receiver down for a minute, SIGKILL mid-delivery, Alertmanager's hook")
    op = w.login("ana", "operator-demo")
    ledger = w.Ledger()
    wait = w.wait_until("the webhook to be drained", lambda: not due(w, op), 60)
    w.check(wait is not None, "before the notification faults nothing waits for the webhook")
    start = newest_audit_id(w, op)

    # Down for a minute: three changes in that minute, all delivered afterwards in order.
    down = sim(w, "POST", "/stand-ins/faults", {"target": "webhook", "mode": "down", "for_secs": 60})
    w.check(down.status == 200, f"the webhook stand-in goes down for 60 s (HTTP {down.status})")
    t0 = time.monotonic()
    for p in (41, 42, 43):
        ledger.set_percentage(op, p, f"proof: while the webhook is down ({p})")
        time.sleep(5)
    wanted = events_after(w, op, start)
    w.check(len(wanted) == 3, f"three flag changes while the receiver is down ({wanted})")
    took = w.wait_until("the webhook to get every event after the minute",
                        lambda: set(wanted) <= set(accepted_ids(w)), 150, 1)
    got = [i for i in accepted_ids(w) if i > start]
    w.check(got == wanted, f"after the minute the webhook got every event once, in order ({got} == {wanted})")
    failed = [r for r in received(w, "webhook") if r["status"] == 503]
    w.check(len(failed) >= 3, f"the sender kept trying while it was down ({len(failed)} refused attempts)")
    w.FIGURES["receiver_down_60s"] = {"events": len(wanted), "refused_attempts": len(failed),
                                      "all_delivered_after_s": round(time.monotonic() - t0, 1) if took else None}

    # SIGKILL while a delivery hangs: the event is delivered once, after the restart.
    start = newest_audit_id(w, op)
    sim(w, "POST", "/stand-ins/faults", {"target": "webhook", "mode": "hang", "count": 1})
    ledger.set_percentage(op, 44, "proof: SIGKILL while its notification is in flight")
    in_flight = w.wait_until("the delivery to be in flight",
                             lambda: any(r["status"] == 0 and r["body"]["id"] > start for r in received(w, "webhook")), 30)
    w.check(in_flight is not None, "the change's delivery is in flight (the receiver holds it) when the dashboard is killed")
    w.DASHBOARD.kill(signal.SIGKILL)
    w.start_dashboard()
    op = w.login("ana", "operator-demo")
    event = events_after(w, op, start)
    took = w.wait_until("the event to be delivered after the restart",
                        lambda: any(i in event for i in accepted_ids(w)), 60, 0.5)
    time.sleep(3)
    times = [i for i in accepted_ids(w) if i in event]
    w.check(len(event) == 1 and times == event, f"after the restart the event is delivered exactly once ({times} of {event})")
    w.FIGURES["sigkill_mid_delivery"] = {"delivered_after_restart_s": round(took, 1) if took else None,
                                         "accepted": len(times)}
    alert_chain(w)


def due(w, cookie):
    view = w.get("/api/v1/notifications", cookie=cookie, timeout=10).json()
    return sum(r["due"] for r in view["receivers"])


def alert_chain(w):
    """Old clients surge; Prometheus's LegacyDoseSurge fires; Alertmanager calls the hook; killed."""
    op = w.login("ana", "operator-demo")
    ledger = w.Ledger()
    ledger.set_percentage(op, 50, "proof: before the legacy surge")
    before = newest_audit_id(w, op)
    sim(w, "POST", "/__emulator/legacy_clients", {"per_s": 4})
    t0 = time.monotonic()
    took = w.wait_until("the legacy surge to kill the rollout through Alertmanager",
                        lambda: w.configmap_flag() == "0", 240, 1)
    sim(w, "POST", "/__emulator/legacy_clients", {"per_s": 0})
    w.check(took is not None, f"a surge of legacy writes killed the rollout through Prometheus, Alertmanager and "
                              f"the hook in {took and round(took)} s")
    entries = [e for e in w.audit_entries(op) if e["id"] > before]
    kills = [e for e in entries if e["action"] == "flag.kill" and e["outcome"] == "done"]
    w.check(len(kills) == 1 and kills[0]["actor"] == "alertmanager" and "LegacyDoseSurge" in (kills[0].get("reason") or ""),
            f"one kill, by alertmanager, naming the alert ({[(k['actor'], k.get('reason')) for k in kills]})")
    hooks = [e for e in entries if e["action"] == "hook.alert" and e["outcome"] == "done"]
    w.check(len(hooks) == 1 and "alertname=LegacyDoseSurge" in (hooks[0].get("reason") or ""),
            "the alert's labels and fingerprint are in the audit trail")
    slack = w.wait_until("Slack to get the kill", lambda: any(
        "Kill switch" in (r["body"].get("text") or "") and "by alertmanager" in r["body"]["text"]
        for r in received(w, "slack") if r["status"] == 200), 30)
    w.check(slack is not None, "the Slack stand-in got the kill (text and blocks, as Slack documents)")
    grafana = w.wait_until("Grafana to get the kill", lambda: any(
        "flag.kill" in (r["body"].get("tags") or []) for r in received(w, "grafana") if r["status"] == 200), 30)
    w.check(grafana is not None, "the Grafana stand-in got the kill as an annotation (tags rollout, insulin_dose_split)")
    am_port = int(w.ENV["PROOF_AM_PORT"])
    held = w.wait_until("Alertmanager to hold RolloutKilled", lambda: any(
        a["labels"].get("alertname") == "RolloutKilled" and a["labels"].get("source") == "rollout-dashboard"
        for a in w.request(am_port, "GET", "/api/v2/alerts", timeout=5).json()), 60, 1)
    w.check(held is not None, "Alertmanager holds the dashboard's RolloutKilled alert")
    w.FIGURES["alert_chain"] = {"surge_to_kill_s": round(took, 1) if took else None,
                                "kill_to_alertmanager_s": round(held, 1) if held else None,
                                "total_s": round(time.monotonic() - t0, 1)}
