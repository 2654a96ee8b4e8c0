// Runs last (files run in name order): it stops the world's Prometheus.
// The overview in a real browser (Debian Chromium, headless) against the end2end world that
// scripts/test starts: PostgreSQL with fixtures/diary.sql, Prometheus backfilled at constant
// rates, and the simulator's emulated Kubernetes API.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { chromium } from "playwright-core";

const BASE = process.env.E2E_BASE_URL;
const SIM = process.env.E2E_SIM_URL;
const KUBE_TOKEN = process.env.E2E_KUBE_TOKEN;
const PROM_PID = Number(process.env.E2E_PROMETHEUS_PID);
assert.ok(BASE && SIM && KUBE_TOKEN && PROM_PID, "run through scripts/test, which sets E2E_* variables");

// What the fixtures imply:
// - fixtures/diary.sql, last 24 h (created_at in [now-24h, now)): 11 rows;
//   insulin_short set on 4 short-only + 1 both + 1 doubled = 6; insulin_long on 2 + 1 + 1 = 4.
// - Prometheus: split_dose_saved_total grows 1.9/s, legacy_dose_used_total 0.07/s (scripts/test).
// - simulator: flag "5", deployment diary-writer with 3 replicas, all ready.
const EXPECTED = {
  "flag-percentage": "5 %",
  "flag-raw": "5",
  "split-rate": "1.90 /s",
  "legacy-rate": "0.07 /s",
  "records-total": "11",
  "records-with-short": "6",
  "records-with-long": "4",
  "schema-short": "present",
  "schema-long": "present",
  "schema-revision": "b7e9d1c0f2a3",
  "writer-replicas": "3",
  "writer-ready": "3",
};

let browser;
before(async () => {
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_PATH || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
});
after(async () => { await browser?.close(); });

async function openOverview() {
  const page = await browser.newPage();
  const problems = [];
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("console", (m) => { if (m.type() === "error") problems.push(`console: ${m.text()}`); });
  page.on("response", (r) => { if (r.status() >= 400) problems.push(`HTTP ${r.status()} for ${r.url()}`); });
  const response = await page.goto(BASE + "/", { waitUntil: "load" });
  assert.equal(response.status(), 200);
  return { page, problems };
}

const text = (page, id) => page.locator(`[data-testid="${id}"]`).first().innerText();

test("with Prometheus stopped only the usage panel fails, and the page still renders", async () => {
  process.kill(PROM_PID, "SIGTERM");
  // Wait until the dashboard sees Prometheus gone.
  for (let i = 0; i < 40; i++) {
    const s = await (await fetch(BASE + "/api/v1/status")).json();
    if (s.metrics.error) break;
    await new Promise((r) => setTimeout(r, 250));
  }
  // Answers are cached for one refresh interval (2 s here); wait until the adoption answer fails too.
  for (let i = 0; i < 40 && (await fetch(BASE + "/api/v1/adoption")).status !== 503; i++) {
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
  // Only what comes from Prometheus is stale; the records panels stay live.
  assert.equal((await text(page, "records-total")).trim(), "11");
  assert.ok(Number(await page.locator('[data-testid="chart-records"]').getAttribute("data-points")) > 10);
  const failed = await page.locator(".source-error").evaluateAll((els) => els.map((e) => e.dataset.testid).sort());
  assert.deepEqual(failed, ["alerts-error", "chart-share-error", "chart-usage-error", "metrics-error"]);
  await page.screenshot({ path: ".artifacts/overview-prometheus-down.png", fullPage: true });
  await page.close();
});

