// Rollout control in a real browser: a viewer sees the controls disabled; an operator moves the
// rollout to 25 % through the confirmation dialog; the ConfigMap, the audit page and the usage
// chart's markers all show it.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { BASE, SIM, KUBE_TOKEN, hydrated, launch, signedIn as signedInTo } from "../lib.mjs";

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

const signedIn = (user, password) => signedInTo(browser, user, password, "/rollout");

const configMapValue = async () => {
  const r = await fetch(`${SIM}/api/v1/namespaces/diabetes/configmaps/feature-flags`, {
    headers: { authorization: `Bearer ${KUBE_TOKEN}` },
  });
  return (await r.json()).data.insulin_dose_split;
};

test("a viewer sees the rollout controls disabled, with the reason", async () => {
  const { context, page } = await signedIn("bo", "viewer-demo");
  assert.match(await page.locator('[data-testid="controls-disabled"]').innerText(), /only operators may change the rollout/);
  assert.ok(await page.locator('[data-testid="preset-25"]').isDisabled());
  assert.ok(await page.locator('[data-testid="kill"]').isDisabled());
  assert.ok(await page.locator('[data-testid="review-change"]').isDisabled());
  await page.screenshot({ path: ".artifacts/rollout-viewer.png", fullPage: true });
  await context.close();
});

test("an operator moves the rollout to 25 %, and the ConfigMap, the audit page and the chart show it", async () => {
  const before = await configMapValue();
  const { context, page, problems } = await signedIn("ana", "operator-demo");
  // The fixtures hold a doubled record and a firing rollout alert: the guards fail.
  assert.match(await page.locator('[data-testid="guard-no_doubled_records"]').innerText(), /✗/);
  await page.click('[data-testid="preset-25"]');
  await page.fill('[data-testid="reason"]', "step two of the plan");
  assert.ok(await page.locator('[data-testid="review-change"]').isDisabled(), "an increase past failed guards needs an override");
  await page.check('[data-testid="override"]');
  await page.fill('[data-testid="override-reason"]', "the doubled row is the known fixture record");
  await page.click('[data-testid="review-change"]');
  const dialog = await page.locator('[data-testid="confirm-text"]').innerText();
  assert.match(dialog, /to 25 %/);
  assert.match(dialog, /ConfigMap diabetes\/feature-flags, key insulin_dose_split/);
  await page.screenshot({ path: ".artifacts/rollout-confirm.png", fullPage: true });
  await page.click('[data-testid="confirm"]');
  await page.waitForSelector('[data-testid="rollout-result"]');
  assert.match(await page.locator('[data-testid="rollout-result"]').innerText(), /^Done: .* → 25%? \(audit entry #\d+\)\.$/);
  const after = await configMapValue();
  assert.match(after, /^25%?$/, `the ConfigMap holds 25 (was ${before})`);
  await page.waitForFunction(() => document.querySelector('[data-testid="rollout-percentage"]')?.textContent.trim() === "25 %");

  await page.goto(BASE + "/audit");
  await hydrated(page);
  await page.screenshot({ path: ".artifacts/audit.png", fullPage: true });
  const table = await page.locator('[data-testid="audit-table"]').innerText();
  assert.match(table, /ana \(operator\)\s+flag\.set\s+\S+\s+25%?\s+step two of the plan\s+done/);
  assert.match(table, /guards overridden \(no_doubled_records, no_firing_alert\): the doubled row is the known fixture record/);
  // Below the trail, who was told: this world configures no receiver, and the page says so.
  assert.match(await page.locator('[data-testid="notify-none"]').innerText(), /No receivers are configured/);
  const csv = await (await fetch(BASE + "/api/v1/audit.csv?action=flag.set")).text();
  assert.match(csv.split("\r\n")[0], /^id,at,actor,role,action,target,value_before,value_after,reason,outcome/);
  assert.match(csv, /,ana,operator,flag\.set,diabetes\/feature-flags\/insulin_dose_split,/);

  // The poller records the change; the usage chart then carries a marker saying who and why.
  const changed = /→ 25%? \(/;
  let title = "";
  for (let i = 0; i < 40 && !changed.test(title); i++) {
    await page.goto(BASE + "/?range=1h");
    await hydrated(page);
    const markers = page.locator('[data-testid="chart-usage"] svg rect.marker title');
    title = (await markers.count()) ? await markers.last().textContent() : "";
    if (!changed.test(title)) await new Promise((r) => setTimeout(r, 500));
  }
  assert.match(title, /→ 25%?/);
  assert.match(title, /ana: step two of the plan/);
  assert.deepEqual(problems, []);
  await context.close();
});
