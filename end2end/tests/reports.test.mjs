// Reports for BI in a real browser: every chart drawn inline, and each of its three files
// downloaded through the page's links: a PNG that is a PNG, an SVG with its series, a CSV whose
// numbers agree with the records API.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { BASE, launch, open, svgsIn } from "../lib.mjs";

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

const CHARTS = ["usage", "legacy-share", "record-categories", "insulin-units", "client-versions", "crossover", "dose-totals"];

test("each report chart is in the HTML once, not again in the hydration data", async () => {
  const html = await (await fetch(BASE + "/reports?range=7d")).text();
  assert.equal(svgsIn(html), CHARTS.length);
});

test("every report chart is drawn, captioned, and downloads as PNG, SVG and CSV", async () => {
  const context = await browser.newContext({ acceptDownloads: true });
  const { page, problems } = await open(context, "/reports?range=7d");
  await page.waitForSelector("body[data-hydrated=true]", { timeout: 30000 });
  const files = {};
  for (const id of CHARTS) {
    // Chromium lets one page start only so many downloads: a fresh page per chart.
    const { page, problems: more } = await open(context, "/reports?range=7d");
    await page.waitForSelector("body[data-hydrated=true]", { timeout: 30000 });
    const fig = page.locator(`[data-testid="report-${id}"]`);
    assert.equal(await fig.locator("svg").count() > 0, true, `${id} is drawn inline`);
    const caption = await page.locator(`[data-testid="caption-${id}"]`).innerText();
    assert.match(caption, /Source: .+Range: .+ to .+Time zone: UTC/s, caption);
    for (const ext of ["png", "svg", "csv"]) {
      const [download] = await Promise.all([
        page.waitForEvent("download"),
        page.click(`[data-testid="download-${id}-${ext}"]`),
      ]);
      assert.equal(download.suggestedFilename(), `${id}-7d.${ext}`);
      files[`${id}.${ext}`] = await readFile(await download.path());
    }
    assert.deepEqual(more, []);
    await page.close();
  }
  for (const id of CHARTS) {
    const png = files[`${id}.png`];
    assert.deepEqual([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], `${id}.png is a PNG`);
    assert.equal(png.readUInt32BE(16), 960, `${id}.png width`);
    assert.equal(png.readUInt32BE(20), 360, `${id}.png height`);
    assert.ok(png.length > 10_000, `${id}.png is not blank (${png.length} bytes)`);
    assert.match(files[`${id}.svg`].toString(), /^<svg/);
  }
  assert.match(files["insulin-units.svg"].toString(), /DOUBLED rows(&apos;|')? dose \(not in the totals\)/);
  assert.match(files["usage.csv"].toString(), /^time \(UTC\),split/);

  // The categories CSV holds every record once: its sum is the records API's total.
  const rows = files["record-categories.csv"].toString().trim().split("\r\n").map((l) => l.split(","));
  assert.deepEqual(rows[0].slice(1), ["legacy only (dose)", "short only", "long only", "both parts", "DOUBLED (defect)", "empty (no dose)"]);
  const sum = rows.slice(1).flatMap((r) => r.slice(1)).reduce((a, v) => a + Number(v), 0);
  const doubled = rows.slice(1).reduce((a, r) => a + Number(r[5]), 0);
  // Whole days only: today, unfinished, is left out of the daily reports (UTC here).
  const summary = await (await fetch(BASE + "/api/v1/records/summary?window=7d")).json();
  const series = await (await fetch(BASE + "/api/v1/records/series?range=2d&step=1h")).json();
  const midnight = new Date();
  midnight.setUTCHours(0, 0, 0, 0);
  const today = series.buckets.filter((b) => new Date(b.start) >= midnight);
  const sumOf = (key) => today.reduce((a, b) => a + b[key], 0);
  assert.equal(sum, summary.total - sumOf("total"));
  assert.equal(doubled, summary.doubled - sumOf("doubled"));
  assert.equal(rows[rows.length - 1][0], new Date(midnight - 86_400_000).toISOString().slice(0, 10) + " 00:00:00");

  assert.equal(await page.locator('[data-testid="rule-doubled"]').count(), 1);
  assert.match(await page.locator('[data-testid="rule-legacy_only"]').innerText(), /counted once, as short/);
  await page.screenshot({ path: ".artifacts/reports.png", fullPage: true });
  assert.deepEqual(problems, []);
  await context.close();
});
