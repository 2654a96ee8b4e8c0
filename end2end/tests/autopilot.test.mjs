// The autopilot in a real browser, with every check acting for real: the simulator's patients
// write (skewed users, the split path logging more entries per user) and Prometheus scrapes them,
// so sample_ratio reads users from the diary, legacy_share the live counters and alerts the
// world's rollout alert (which fires only while the writers are quiet). An operator starts a
// two-step plan with short bake times, watches it advance on those checks, then the simulator's
// doubled-dose fault makes the autopilot kill the flag, and the page shows which check failed,
// with its value and its SQL. It runs before sources_down (end2end/order.txt), which stops
// Prometheus, and turns the traffic off again when it ends.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { BASE, SIM, KUBE_TOKEN, PROM_URL, launch, signedIn as signedInTo } from "../lib.mjs";

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

const configMapValue = async () => {
  const r = await fetch(`${SIM}/api/v1/namespaces/diabetes/configmaps/feature-flags`, {
    headers: { authorization: `Bearer ${KUBE_TOKEN}` },
  });
  return (await r.json()).data.insulin_dose_split;
};

const emulator = (what, body) => fetch(`${SIM}/__emulator/${what}`, {
  method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body),
});

async function until(what, check, seconds = 30) {
  const deadline = Date.now() + seconds * 1000;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`not within ${seconds} s: ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

test("a viewer sees the autopilot without its controls", async () => {
  const { context, page } = await signedInTo(browser, "bo", "viewer-demo", "/autopilot");
  assert.match(await page.locator('[data-testid="autopilot-disabled"]').innerText(), /operator/);
  assert.equal(await page.locator('[data-testid="plan-start"]').count(), 0);
  await context.close();
});

test("an operator starts a plan, it advances on the real checks, and a doubled dose makes it kill the flag", async () => {
  const { context, page, problems } = await signedInTo(browser, "ana", "operator-demo", "/autopilot");
  // The backfilled constant history (the earlier tests' fixture, which runs an hour into the
  // future and has no job label) goes, so that the checks read only what the writers write.
  const history = new URLSearchParams({ "match[]": '{__name__=~"split_dose_saved_total|legacy_dose_used_total",job=""}' });
  const deleted = await fetch(`${PROM_URL}/api/v1/admin/tsdb/delete_series?${history}`, { method: "POST" });
  assert.equal(deleted.status, 204, await deleted.text());
  // Patients start writing: 3 replicas × 4 visits a second.
  assert.equal((await emulator("traffic", { per_replica_per_s: 4 })).status, 200);
  try {
    await until("the world's rollout alert stops firing once the writers write", async () => {
      const alerts = await (await fetch(`${BASE}/api/v1/alerts`)).json();
      return !JSON.stringify(alerts).includes("E2ERolloutWritersQuiet");
    }, 60);
    await page.fill('[data-testid="plan-steps"]', "30 5s, 40 1h");
    await page.fill('[data-testid="plan-reason"]', "end2end: roll out split doses");
    // This world keeps a doubled fixture record from yesterday: the rollout guards fail on it,
    // so the operator lets the plan's writes pass them, with a reason.
    await page.fill('[data-testid="plan-override"]', "known fixture record");
    await page.click('[data-testid="plan-start"]');
    await until("step 1 is written", async () => (await configMapValue()) === "30%");
    // Step 2 waits until every check passes for real: users split as the flag says (after
    // its grace and 30 s of users), the legacy share under the step's ceiling, no rollout alert.
    await until("step 2 is written once the real checks pass for its bake time", async () =>
      (await configMapValue()) === "40%", 150);
    await until("the page shows step 2 running", async () =>
      (await page.locator('[data-testid="plan-step-2"]').getAttribute("data-state")) === "running");
    assert.equal(await page.locator('[data-testid="plan-step-1"]').getAttribute("data-state"), "done");
    assert.match(await page.locator('[data-testid="plan-state"]').innerText(), /running/);
    for (const check of ["sample_ratio", "legacy_share", "alerts"]) {
      const row = page.locator(`[data-testid="check-${check}"]`);
      assert.notEqual(await row.getAttribute("data-verdict"), "fail", check);
      assert.doesNotMatch(await row.innerText(), /dry_run/, `${check} acts`);
    }

    // A faulty client: every split save now copies the dose into both parts.
    assert.equal((await emulator("doubled", { percent: 100 })).status, 200);
    const saved = await fetch(`${SIM}/v1/diary`, {
      method: "POST", headers: { "content-type": "application/json" },
      body: JSON.stringify({ user_id: 42, insulin_short: 4 }),
    });
    assert.equal(saved.status, 201);
    const row = await saved.json();
    assert.deepEqual([row.dose, row.insulin_short, row.insulin_long], [4, 4, 4], "the fault doubled the dose");
    await until("the autopilot kills the flag", async () => (await configMapValue()) === "0%", 20);
    await until("the page says the plan was killed", async () =>
      /killed/.test(await page.locator('[data-testid="plan-state"]').innerText()));
    const check = page.locator('[data-testid="check-doubled_doses"]');
    assert.equal(await check.getAttribute("data-verdict"), "fail");
    const value = Number(await check.locator("td:nth-child(3)").innerText());
    assert.ok(value >= 1, `the value counts the doubled records written since the start: ${value}`);
    const text = await check.innerText();
    assert.match(text, /insulin_short = dose AND insulin_long = dose/, "the SQL as run");
    assert.match(text, /kill/);
    assert.match(await page.locator('[data-testid="plan-why"]').innerText(), /doubled_doses failed/);
    // The check's recent values are drawn, the failing round among them.
    await until("the doubled_doses chart shows the failing round", async () =>
      Number(await page.locator('[data-testid="check-chart-doubled_doses"]').getAttribute("data-points")) >= 2);
    assert.match(await page.locator('[data-testid="check-chart-doubled_doses"]').innerHTML(), /<svg/);
    await page.screenshot({ path: ".artifacts/autopilot.png", fullPage: true });
  } finally {
    await emulator("doubled", { percent: 0 });
    await emulator("traffic", { per_replica_per_s: 0 });
  }
  assert.deepEqual(problems, []);
  await context.close();
});
