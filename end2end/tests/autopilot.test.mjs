// The autopilot in a real browser: an operator starts a two-step plan with short bake times,
// watches it advance, then the simulator's doubled-dose fault makes the autopilot kill the flag,
// and the page shows which check failed, with its value and its SQL. It runs after sources_down
// (end2end/order.txt): Prometheus is stopped, so the checks that read it are inconclusive dry runs
// here (end2end/fixtures/settings.toml), and the database's checks decide.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { SIM, KUBE_TOKEN, launch, signedIn as signedInTo } from "../lib.mjs";

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

const configMapValue = async () => {
  const r = await fetch(`${SIM}/api/v1/namespaces/diabetes/configmaps/feature-flags`, {
    headers: { authorization: `Bearer ${KUBE_TOKEN}` },
  });
  return (await r.json()).data.insulin_dose_split;
};

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

test("an operator starts a plan, it advances, and a doubled dose makes it kill the flag", async () => {
  const { context, page, problems } = await signedInTo(browser, "ana", "operator-demo", "/autopilot");
  await page.fill('[data-testid="plan-steps"]', "30 5s, 40 1h");
  await page.fill('[data-testid="plan-reason"]', "end2end: roll out split doses");
  // This world keeps a doubled fixture record from yesterday and an always-firing alert: the
  // rollout guards fail, so the operator lets the plan's writes pass them, with a reason.
  await page.fill('[data-testid="plan-override"]', "known fixture record and test alert");
  await page.click('[data-testid="plan-start"]');
  await until("step 1 is written", async () => (await configMapValue()) === "30%");
  await until("step 2 is written after its bake time", async () => (await configMapValue()) === "40%");
  await until("the page shows step 2 running", async () =>
    (await page.locator('[data-testid="plan-step-2"]').getAttribute("data-state")) === "running");
  assert.equal(await page.locator('[data-testid="plan-step-1"]').getAttribute("data-state"), "done");
  assert.match(await page.locator('[data-testid="plan-state"]').innerText(), /running/);

  // A faulty client: every split save now copies the dose into both parts.
  const fault = await fetch(`${SIM}/__emulator/doubled`, {
    method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ percent: 100 }),
  });
  assert.equal(fault.status, 200);
  const saved = await fetch(`${SIM}/v1/diary`, {
    method: "POST", headers: { "content-type": "application/json" },
    body: JSON.stringify({ user_id: 42, insulin_short: 4 }),
  });
  assert.equal(saved.status, 201);
  const row = await saved.json();
  assert.deepEqual([row.dose, row.insulin_short, row.insulin_long], [4, 4, 4], "the fault doubled the dose");
  try {
    await until("the autopilot kills the flag", async () => (await configMapValue()) === "0%", 20);
    await until("the page says the plan was killed", async () =>
      /killed/.test(await page.locator('[data-testid="plan-state"]').innerText()));
    const check = page.locator('[data-testid="check-doubled_doses"]');
    assert.equal(await check.getAttribute("data-verdict"), "fail");
    const text = await check.innerText();
    assert.match(text, /1\.0000/, "the value: one doubled record");
    assert.match(text, /insulin_short = dose AND insulin_long = dose/, "the SQL as run");
    assert.match(text, /kill/);
    assert.match(await page.locator('[data-testid="plan-why"]').innerText(), /doubled_doses failed/);
    // The check's recent values are drawn, the failing round among them.
    await until("the doubled_doses chart shows the failing round", async () =>
      Number(await page.locator('[data-testid="check-chart-doubled_doses"]').getAttribute("data-points")) >= 2);
    assert.match(await page.locator('[data-testid="check-chart-doubled_doses"]').innerHTML(), /<svg/);
    await page.screenshot({ path: ".artifacts/autopilot.png", fullPage: true });
  } finally {
    await fetch(`${SIM}/__emulator/doubled`, {
      method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ percent: 0 }),
    });
  }
  assert.deepEqual(problems, []);
  await context.close();
});
