// The guided rollback from the browser (last in end2end/order.txt: it downgrades the e2e diary).
// An operator enters the previous revision in the deploy journal, reads the dry run, types the
// confirmations, starts the run and watches every step turn green; the incident record exists.
// Prometheus is already stopped by sources_down (before it in the order): the run must not need it.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { BASE, SIM, KUBE_TOKEN, launch, signedIn as signedInTo } from "../lib.mjs";

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

const signedIn = (user, password) => signedInTo(browser, user, password, "/rollback");

const state = (page, name) => page.locator(`[data-testid="step-${name}"]`).getAttribute("data-state");

test("a viewer sees the rollback disabled, with the reason", async () => {
  const { context, page } = await signedIn("bo", "viewer-demo");
  assert.match(await page.locator('[data-testid="rollback-disabled"]').innerText(), /only operators may run a rollback/);
  assert.ok(await page.locator('[data-testid="start-rollback"]').isDisabled());
  assert.ok(await page.locator('[data-testid="deploy-record"]').isDisabled());
  await context.close();
});

test("an operator runs the whole rollback from the page and every step turns green", async () => {
  const { context, page, problems } = await signedIn("ana", "operator-demo");
  const pre = page.locator('[data-testid="pre-previous_revision_known"]');
  assert.match(await pre.innerText(), /does not know the revision before b7e9d1c0f2a3/);
  assert.ok(await page.locator('[data-testid="start-rollback"]').isDisabled());

  // The deploy journal learns the previous revision.
  await page.fill('[data-testid="deploy-previous"]', "a1f3c2d4e5b6");
  await page.click('[data-testid="deploy-record"]');
  await page.locator('[data-testid="deploy-result"]').waitFor();
  await page.waitForFunction(() => document.querySelector('[data-testid="pre-previous_revision_known"]')?.classList.contains("guard-ok"));

  // The dry run names the real command.
  assert.match(await page.locator('[data-testid="plan-schema_downgrade"]').innerText(), /downgrade a1f3c2d4e5b6/);
  // The plan's survey is for signed-in callers: the operator's session cookie.
  const cookie = (await context.cookies()).map((c) => `${c.name}=${c.value}`).join("; ");
  const plan = await (await fetch(BASE + "/api/v1/rollback/plan", { method: "POST", headers: { origin: BASE, cookie } })).json();
  assert.equal(plan.ready, true, JSON.stringify(plan.preconditions));

  await page.fill('[data-testid="rollback-reason"]', "doubled doses in the BI report");
  await page.fill('[data-testid="ack-rows"]', String(plan.data_loss_rows));
  await page.fill('[data-testid="confirm-env"]', "production");
  assert.ok(await page.locator('[data-testid="start-rollback"]').isDisabled(), "the wrong environment name keeps it disabled");
  await page.fill('[data-testid="confirm-env"]', "e2e");
  await page.click('[data-testid="start-rollback"]');

  // Live progress: every step done (restore not chosen), the run done.
  await page.waitForFunction(
    () => document.querySelector('[data-testid="run-state"]')?.innerText.endsWith(": done"),
    null, { timeout: 120000 },
  );
  for (const name of ["stop_writers", "flag_off", "archive_split_values", "schema_downgrade", "verify_schema", "scale_writers_back", "smoke_checks", "incident_record"]) {
    assert.equal(await state(page, name), "done", name);
  }
  for (const name of ["fill_dose", "restore_data", "reinsert_dropped_rows"]) {
    assert.equal(await state(page, name), "not_chosen", name);
  }
  await page.screenshot({ path: ".artifacts/rollback-done.png", fullPage: true });

  // The world: flag 0, writers back at 3, the split columns gone.
  const cm = await (await fetch(`${SIM}/api/v1/namespaces/diabetes/configmaps/feature-flags`, {
    headers: { authorization: `Bearer ${KUBE_TOKEN}` },
  })).json();
  assert.equal(cm.data.insulin_dose_split, "0%"); // the format the rollout test left (25%), written 0% by the autopilot's kill
  let status;
  for (let i = 0; i < 40; i++) { // answers are cached for one refresh interval
    status = await (await fetch(BASE + "/api/v1/status")).json();
    if (status.schema.alembic_revision === "a1f3c2d4e5b6") break;
    await new Promise((r) => setTimeout(r, 250));
  }
  assert.equal(status.schema.alembic_revision, "a1f3c2d4e5b6");
  assert.equal(status.schema.insulin_short, false);
  assert.equal(status.writer.replicas, 3);

  // The incident record, as Markdown.
  const href = await page.locator('[data-testid="incident-link"]').getAttribute("href");
  const md = await (await fetch(BASE + href)).text();
  assert.match(md, /^# Incident: rollback of insulin_dose_split in e2e/);
  assert.match(md, /doubled doses in the BI report/);
  assert.match(md, /## Postmortem/);
  assert.deepEqual(problems, []);
  await context.close();
});
