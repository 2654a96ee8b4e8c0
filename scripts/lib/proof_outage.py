"""The state-database outage part of `scripts/proof faults` (issue 31), run by
scripts/lib/proof.py with that module as `w` (its processes, HTTP helpers and checks): with
PostgreSQL stopped, the kill switch pressed in a real browser page and a firing alert through the
hook each set the flag to 0 %; after it, both kills and the alert are in the audit trail once each.
"""

import json
import os
import subprocess
import time


def set_flag_as_kubectl(w, value):
    """Someone outside the dashboard writes the flag (the emulated API server, as kubectl would)."""
    path = "/api/v1/namespaces/diabetes/configmaps/feature-flags"
    auth = {"Authorization": f"Bearer {w.ENV['PROOF_KUBE_TOKEN']}"}
    cm = w.request(int(w.ENV["PROOF_SIM_PORT"]), "GET", path, headers=auth, timeout=5).json()
    cm["data"]["insulin_dose_split"] = value
    r = w.request(int(w.ENV["PROOF_SIM_PORT"]), "PUT", path, body=json.dumps(cm).encode(),
                headers={**auth, "Content-Type": "application/json"}, timeout=5)
    assert r.status == 200, r.status


OUTAGE_REASON = "proof: browser kill while the state database is down"


def kills(w, operator):
    """With PostgreSQL stopped (the state database with it): the kill switch pressed in a real
    browser page, the session cookie from before the outage, and a firing alert through the
    hook; each timed from the action to the flag at 0 %."""
    w.check(w.get("/readyz").status == 200, "with the state database down the dashboard stays ready")
    if w.configmap_flag() == "0":
        set_flag_as_kubectl(w, "22")
    t0 = time.monotonic()
    out = subprocess.run(["node", os.path.join(w.ENV["PROOF_REPO"], "end2end", "kill-in-browser.mjs"), w.ORIGIN, operator,
                          OUTAGE_REASON], capture_output=True, text=True, timeout=120)
    answer = json.loads((out.stdout.strip().splitlines() or ["{}"])[-1])
    browser_s = answer.get("seconds")
    w.check(out.returncode == 0 and "Done" in answer.get("result", "") and w.configmap_flag() == "0",
          f"state database down: the browser's kill sets the flag to 0 % ({browser_s} s from Confirm; {answer})")
    set_flag_as_kubectl(w, "22")
    alert = {"version": "4", "status": "firing", "receiver": "dashboard", "alerts": [{
        "status": "firing", "labels": {"alertname": "LegacyDoseSurge", "rollout": "insulin_dose_split"},
        "annotations": {"summary": "proof: outage"}, "startsAt": "2026-12-06T00:00:00Z", "fingerprint": "proof-outage"}]}
    t1 = time.monotonic()
    r = w.request(w.SITE_PORT, "POST", "/api/v1/hooks/alertmanager", body=json.dumps(alert).encode(), timeout=30, headers={
        "Content-Type": "application/json", "Authorization": f"Bearer {w.ENV['PROOF_HOOK_TOKEN']}"})
    hook_s = round(time.monotonic() - t1, 3)
    w.check(r.status == 200 and w.configmap_flag() == "0",
          f"state database down: a firing alert through the hook sets the flag to 0 % in {hook_s} s (HTTP {r.status})")
    st = w.status()
    w.check(any("still kill" in d for d in st.get("degraded") or []), "the status says the state database is down and kills still work")
    w.FIGURES["outage_kills"] = {"browser_click_to_done_s": browser_s, "hook_s": hook_s,
                               "both_s": round(time.monotonic() - t0, 1)}


def audited(w, operator):
    """After the outage: both kills and the alert are in the audit trail, once each."""
    def entries():
        e = w.audit_entries(operator)
        return ([x for x in e if x["action"] == "flag.kill" and x.get("reason") == OUTAGE_REASON],
                [x for x in e if x["action"] == "flag.kill" and "proof-outage" in (x.get("reason") or "")],
                [x for x in e if x["action"] == "hook.alert" and x["target"] == "alert proof-outage"])
    took = w.wait_until("the journal's kills in the audit trail", lambda: all(entries()), 3 * w.REFRESH)
    browser, hook, alert = entries()
    w.check(took is not None and (len(browser), len(hook), len(alert)) == (1, 1, 1),
          f"the outage's kills are in the audit trail once each after it (browser {len(browser)}, hook {len(hook)}, alert {len(alert)})")
