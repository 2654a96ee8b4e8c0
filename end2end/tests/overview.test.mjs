// The overview in a real browser (Debian Chromium, headless) against the end2end world that
// scripts/test starts: PostgreSQL with fixtures/diary.sql, Prometheus backfilled at constant
// rates, and the simulator's emulated Kubernetes API.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { BASE, SIM, KUBE_TOKEN, hydrated, launch, open, svgsIn, text } from "../lib.mjs";

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
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

const openOverview = () => open(browser, "/");

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

test("the record counters on the page equal the API's, and follow the definitions", async () => {
  const { page, problems } = await openOverview();
  const api = await (await fetch(BASE + "/api/v1/records/summary?window=24h")).json();
  // fixtures/diary.sql: 1 both + 1 doubled have both parts; 2 legacy-only; 1 doubled; 1 without dose.
  assert.deepEqual(
    [api.total, api.with_short, api.with_long, api.with_both, api.legacy_only, api.doubled, api.empty],
    [11, 6, 4, 2, 2, 1, 1]);
  const ids = { total: "records-total", with_short: "records-with-short", with_long: "records-with-long",
    with_both: "records-with-both", legacy_only: "records-legacy-only", doubled: "records-doubled", empty: "records-empty" };
  for (const [key, id] of Object.entries(ids)) {
    assert.equal((await text(page, id)).trim(), String(api[key]), id);
  }
  // The doubled record is shown loudly, with its id and time only.
  assert.equal((await text(page, "headline-doubled")).trim(), "1");
  assert.match(await text(page, "safety-status"), /1 record\(s\) in the last 24h copy dose/);
  const doubled = await (await fetch(BASE + "/api/v1/records/doubled?limit=5")).json();
  assert.equal(doubled.length, 1);
  assert.match(await text(page, "doubled-list"), new RegExp(`#${doubled[0].id} `));
  // The rollout has just been observed starting: too early for the 24-hour check.
  assert.equal((await text(page, "headline-check")).trim(), "too early to say");
  assert.deepEqual(problems, []);
  await page.close();
});

test("the charts are drawn from data, and the alerts panel shows only the rollout's alerts", async () => {
  const { page, problems } = await openOverview();
  for (const id of ["chart-usage", "chart-share", "chart-records", "chart-versions"]) {
    const fig = page.locator(`[data-testid="${id}"]`);
    assert.ok(Number(await fig.getAttribute("data-points")) > 10, `${id} has points`);
    assert.ok(await fig.locator("svg polyline, svg path").count() > 0, `${id} has lines`);
  }
  // Hovering shows the values at that time (an SVG <title> per point in time).
  const title = await page.locator('[data-testid="chart-usage"] svg g.hover rect:not(.marker) title').last().textContent();
  assert.match(title, /split \(insulin_short \/ insulin_long\): 1\.900 \/s/);
  const adoption = await (await fetch(BASE + "/api/v1/adoption?range=24h")).json();
  assert.ok(adoption.split_per_s.length > 10);
  assert.equal(adoption.target, 0.05);
  assert.ok(Math.abs(adoption.current_share - 0.07 / 1.97) < 1e-6, `share ${adoption.current_share}`);
  await page.waitForSelector('[data-testid="alerts-list"]', { timeout: 15000 });
  const alerts = await text(page, "alerts-list");
  assert.match(alerts, /E2ERolloutWritersQuiet/);
  assert.doesNotMatch(alerts, /E2EUnrelatedAlwaysFiring/);
  assert.deepEqual(problems, []);
  await page.close();
});

test("each chart travels once: drawn in the HTML, left out of the hydration data, kept and refreshed in the browser", async () => {
  const html = await (await fetch(BASE + "/")).text();
  assert.equal(svgsIn(html), 4, "one SVG per chart in the whole page, none in the hydration data");
  const { page, problems } = await openOverview();
  await page.waitForSelector("body[data-hydrated=true]", { timeout: 30000 });
  const lines = async () => {
    const counts = [];
    for (const id of ["chart-usage", "chart-share", "chart-records"]) {
      counts.push(await page.locator(`[data-testid="${id}"] svg polyline, [data-testid="${id}"] svg path`).count());
    }
    return counts;
  };
  const hydrated = await lines();
  assert.ok(hydrated.every((n) => n > 0), `the server's SVG is kept through hydration: ${hydrated}`);
  // The page refreshes itself every 2 s (fixtures/settings.toml): the charts come back with the
  // whole answer of the server function, SVG included.
  const first = await text(page, "generated-at");
  await page.waitForFunction((t) => document.querySelector('[data-testid="generated-at"]')?.textContent !== t,
    first, { timeout: 15000 });
  const refreshed = await lines();
  assert.ok(refreshed.every((n) => n > 0), `the charts are drawn again after a refresh: ${refreshed}`);
  assert.deepEqual(problems, []);
  await page.close();
});

test("the dose totals panel counts the fixtures' moves and names no patient to an anonymous viewer", async () => {
  // fixtures/diary.sql: patients 1–7, 12 and 13 wrote split records but none was seen on the
  // legacy path before (a move before the days kept, or a new patient: not one of these days'
  // moves), 10 only a doubled one (not a move), 15 in the future (not counted): nothing moved,
  // nothing is compared.
  const { page, problems } = await open(browser, "/");
  const summary = (await text(page, "dose-totals-summary")).replace(/\s+/g, " ").trim();
  assert.equal(summary, "0 of 0 patients compared (–) changed their daily short total by ×1.5 or more; 0 logged no long dose after the move; 0 moved in these days; median after/before –.");
  const buckets = await page.locator('[data-testid="dose-totals-buckets"] tbody tr').evaluateAll((trs) =>
    trs.map((tr) => tr.querySelector("td").textContent));
  assert.deepEqual(buckets, ["¼ or less", "¼ to ½", "½ to 0.8", "0.8 to 1.25", "1.25 to 2", "2 to 4", "4 or more"]);
  assert.match(await text(page, "dose-consistency"), /0 of 0 split patient days/);
  assert.equal(await page.locator('[data-testid="dose-totals-sign-in"]').count(), 1);
  const api = await (await fetch(BASE + "/api/v1/patients/dose-totals")).json();
  assert.deepEqual([api.moved, api.both_sides, api.changed, api.examples], [0, 0, 0, null]);
  assert.equal((await fetch(BASE + "/api/v1/patients/dose-totals.csv?patients=yes")).status, 401);
  assert.deepEqual(problems, []);
  await page.close();
});

test("the app versions table shows exactly the writes the fixtures imply, legacy writers first", async () => {
  // The synthetic history by client_version (demo/diary-writer openmetrics::synthetic): split
  // 1.2/s from 4.1.0 and 0.7/s from 4.0.0, legacy 0.05/s from 3.1.4 and 0.02/s from 4.0.0; the
  // hour asked for lies wholly inside it, so each count is its rate times 3,600 s.
  const { page, problems } = await open(browser, "/?range=1h&window=24h");
  const rows = await page.locator('[data-testid="versions-table"] tbody tr').evaluateAll((trs) =>
    trs.map((tr) => [...tr.querySelectorAll("td")].slice(0, 5).map((td) => td.textContent.trim())));
  assert.deepEqual(rows, [
    ["3.1.4", "180", "0", "100.0 %", "71.4 %"],
    ["4.0.0", "72", "2,520", "2.8 %", "28.6 %"],
    ["4.1.0", "0", "4,320", "0.0 %", "0.0 %"],
  ]);
  assert.equal((await text(page, "versions-blame")).trim(), "100 % of legacy writes come from 3.1.4 and 4.0.0");
  const api = await (await fetch(BASE + "/api/v1/adoption/versions?range=1h")).json();
  assert.deepEqual(api.versions.map((v) => [v.version, v.legacy_writes, v.split_writes]),
    [["3.1.4", 180, 0], ["4.0.0", 72, 2520], ["4.1.0", 0, 4320]]);
  const csv = await (await fetch(BASE + "/api/v1/adoption/versions.csv?range=1h")).text();
  assert.match(csv, /^client_version,legacy writes,split writes,/);
  assert.match(csv, /\r\n3\.1\.4,180,0,1\.000000,0\.714286,/);
  // The chart draws each legacy-writing version.
  const chart = await page.locator('[data-testid="chart-versions"] svg').innerHTML();
  assert.match(chart, /client_version 3\.1\.4/);
  assert.match(chart, /client_version 4\.0\.0/);
  await page.locator('[data-testid="versions"]').screenshot({ path: ".artifacts/versions.png" });
  assert.deepEqual(problems, []);
  await page.close();
});

test("bad ranges and windows get a 400 with a JSON error", async () => {
  for (const path of ["/api/v1/records/summary?window=91d", "/api/v1/records/series?range=7d&step=1w",
    "/api/v1/adoption?range=abc", "/api/v1/records/doubled?limit=0", "/api/v1/records/summary?bogus=1",
    "/api/v1/adoption/versions?range=1y"]) {
    const r = await fetch(BASE + path);
    assert.equal(r.status, 400, path);
    const body = await r.json();
    assert.equal(body.code, "bad_request", path);
    assert.ok(body.error.length > 10, path);
  }
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

test("an operator signs in with the form, sees who they are, and signs out", async () => {
  const { page, problems } = await openOverview();
  await page.waitForSelector("body[data-hydrated=true]", { timeout: 30000 });
  assert.equal((await text(page, "signin")).trim(), "Sign in");
  await page.goto(BASE + "/login?next=%2F%3Frange%3D7d");
  await hydrated(page);
  await page.fill('input[name="username"]', "ana");
  await page.fill('input[name="password"]', "not-the-password");
  await page.click('[data-testid="login-submit"]');
  await page.waitForSelector('[data-testid="login-error"]');
  assert.match(await text(page, "login-error"), /Wrong user name or password/);
  await page.goto(BASE + "/login?next=%2F%3Frange%3D7d");
  await hydrated(page);
  await page.fill('input[name="username"]', "ana");
  await page.fill('input[name="password"]', "operator-demo");
  await page.click('[data-testid="login-submit"]');
  await page.waitForURL(BASE + "/?range=7d");
  await page.waitForSelector('[data-testid="user"]');
  assert.equal((await text(page, "user")).trim(), "ana · operator");
  const cookie = (await page.context().cookies()).find((c) => c.name === "rd_session");
  assert.ok(cookie.httpOnly && cookie.sameSite === "Strict", JSON.stringify(cookie));
  await page.click('[data-testid="logout"]');
  await page.waitForSelector('[data-testid="signin"]');
  assert.deepEqual(problems.filter((p) => !p.includes("/auth/login")), []);
  await page.close();
});
