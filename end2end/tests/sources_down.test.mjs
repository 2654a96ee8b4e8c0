// Runs after every test that needs Prometheus (end2end/order.txt): it stops the world's Prometheus and checks that only what
// comes from Prometheus goes stale, while the rest of the page stays live.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { BASE, PROM_PID, launch, open, text } from "../lib.mjs";

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });
const openOverview = () => open(browser, "/");

test("with Prometheus stopped only the usage panel fails, and the page still renders", async () => {
  process.kill(PROM_PID, "SIGTERM");
  // Wait until the dashboard sees Prometheus gone: not the 503 a stopping Prometheus still
  // answers for a moment, but nothing listening. Answers are cached for one refresh interval
  // (2 s here), so the adoption answer is waited for too.
  const gone = (error) => /unreachable/.test(error ?? "");
  for (let i = 0; i < 60; i++) {
    const s = await (await fetch(BASE + "/api/v1/status")).json();
    const a = await fetch(BASE + "/api/v1/adoption");
    if (gone(s.metrics.error) && a.status === 503 && gone((await a.json()).error)) break;
    await new Promise((r) => setTimeout(r, 250));
  }
  assert.equal((await fetch(BASE + "/api/v1/adoption")).status, 503);
  const s = await (await fetch(BASE + "/api/v1/status")).json();
  assert.match(s.metrics.error, /Prometheus/);
  assert.ok(s.failing_since.prometheus, "the status says since when Prometheus has been failing");
  assert.equal(s.metrics.split_per_s, null);
  for (const k of ["flag", "schema", "writer", "records_24h"]) assert.equal(s[k].error, null, k);

  const { page } = await openOverview();
  const err = await text(page, "metrics-error");
  assert.match(err, /Prometheus is unreachable/);
  assert.match(err, /Failing since \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC/);
  assert.match(await text(page, "chart-usage-error"), /Prometheus is unreachable/);
  // Only what comes from Prometheus is stale; the records panels stay live: the fixture's 11
  // records and what the simulator's patients wrote during the autopilot test, as the diary says.
  const total = s.records_24h.total;
  assert.ok(total >= 11, `records in the last 24 hours: ${total}`);
  assert.equal((await text(page, "records-total")).replace(/\D/g, ""), String(total));
  assert.ok(Number(await page.locator('[data-testid="chart-records"]').getAttribute("data-points")) > 10);
  const failed = await page.locator(".source-error").evaluateAll((els) => els.map((e) => e.dataset.testid).sort());
  assert.deepEqual(failed, ["alerts-error", "chart-share-error", "chart-usage-error", "chart-versions-error",
    "metrics-error", "versions-error"]);
  assert.match(await text(page, "versions-error"), /Prometheus is unreachable/);
  await page.screenshot({ path: ".artifacts/overview-prometheus-down.png", fullPage: true });
  await page.close();
});

