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

test("the server sends the values in the HTML, before any script runs", async () => {
  const html = await (await fetch(BASE + "/")).text();
  for (const [id, value] of Object.entries(EXPECTED)) {
    const re = new RegExp(`data-testid="${id}"[^>]*>${value.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}<`);
    assert.match(html, re, `${id} should be server-rendered as ${value}`);
  }
});

test("the overview shows the values the fixtures imply, and hydrates without errors", async () => {
  const { page, problems } = await openOverview();
  await page.waitForSelector("body[data-hydrated=true]", { timeout: 30000 });
  for (const [id, value] of Object.entries(EXPECTED)) {
    assert.equal((await text(page, id)).trim(), value, id);
  }
  assert.equal(await page.locator(".source-error").count(), 0, "no panel reports an error");
  assert.deepEqual(problems, []);
  await page.screenshot({ path: ".artifacts/overview.png", fullPage: true });
  await page.close();
});

test("the JSON status agrees with the page", async () => {
  const s = await (await fetch(BASE + "/api/v1/status")).json();
  assert.equal(s.flag.key, "insulin_dose_split");
  assert.equal(s.flag.percentage, 5);
  assert.equal(s.flag.source, "kubernetes");
  assert.equal(s.records_24h.total, 11);
  assert.equal(s.records_24h.with_short, 6);
  assert.equal(s.records_24h.with_long, 4);
  assert.ok(Math.abs(s.metrics.split_per_s - 1.9) < 1e-6, `split ${s.metrics.split_per_s}`);
  assert.ok(Math.abs(s.metrics.legacy_per_s - 0.07) < 1e-6, `legacy ${s.metrics.legacy_per_s}`);
  assert.equal(s.writer.replicas, 3);
  for (const k of ["flag", "schema", "writer", "metrics", "records_24h"]) assert.equal(s[k].error, null, k);
});

test("a flag change made outside the dashboard appears without a reload", async () => {
  const { page, problems } = await openOverview();
  await page.waitForSelector("body[data-hydrated=true]", { timeout: 30000 });
  const patch = await fetch(`${SIM}/api/v1/namespaces/diabetes/configmaps/feature-flags`, {
    method: "PATCH",
    headers: { "content-type": "application/merge-patch+json", authorization: `Bearer ${KUBE_TOKEN}` },
    body: JSON.stringify({ data: { insulin_dose_split: "10%" } }),
  });
  assert.equal(patch.status, 200);
  await page.waitForFunction(
    () => document.querySelector('[data-testid="flag-percentage"]')?.textContent.trim() === "10 %",
    null, { timeout: 15000 });
  assert.equal((await text(page, "flag-raw")).trim(), "10%");
  assert.deepEqual(problems, []);
  await page.close();
});

test("with Prometheus stopped only the usage panel fails, and the page still renders", async () => {
  process.kill(PROM_PID, "SIGTERM");
  // Wait until the dashboard sees Prometheus gone.
  for (let i = 0; i < 40; i++) {
    const s = await (await fetch(BASE + "/api/v1/status")).json();
    if (s.metrics.error) break;
    await new Promise((r) => setTimeout(r, 250));
  }
  const s = await (await fetch(BASE + "/api/v1/status")).json();
  assert.match(s.metrics.error, /Prometheus/);
  assert.equal(s.metrics.split_per_s, null);
  for (const k of ["flag", "schema", "writer", "records_24h"]) assert.equal(s[k].error, null, k);

  const { page } = await openOverview();
  const err = await text(page, "metrics-error");
  assert.match(err, /Prometheus is unreachable/);
  assert.equal((await text(page, "records-total")).trim(), "11");
  assert.equal(await page.locator(".source-error").count(), 1);
  await page.screenshot({ path: ".artifacts/overview-prometheus-down.png", fullPage: true });
  await page.close();
});
