// The first load of a page as served: every URL Chromium fetches until the page's own code has
// taken over (body[data-hydrated=true]) and the network is idle (the page, its CSS and JS, the
// main wasm and the chunks the page needs), each weighed as the dashboard serves it to a client
// that accepts gzip. Prints one JSON line; exits 1 when a budget is exceeded.
// Used by scripts/proof (the figures) and scripts/end2end (the budgets in CI): one measure.
// Usage: node first-load.mjs URL (budgets: end2end/budgets.json)
import { readFileSync } from "node:fs";
import http from "node:http";
import { chromium } from "playwright-core";

const url = process.argv[2];
// The budgets of end2end/budgets.json, for the page's path (a page not listed has none).
const budgets = JSON.parse(readFileSync(new URL("./budgets.json", import.meta.url), "utf8"));
const budget = { total: budgets.pages[new URL(url).pathname] ?? null, module: budgets.largest_module };

/** The bytes on the wire for `u` with Accept-Encoding: gzip, and the headers. */
function weigh(u) {
  return new Promise((resolve, reject) => {
    http.get(u, { headers: { "accept-encoding": "gzip" } }, (res) => {
      let bytes = 0;
      res.on("data", (c) => { bytes += c.length; });
      res.on("end", () => resolve({ status: res.statusCode, bytes, headers: res.headers }));
      res.on("error", reject);
    }).on("error", reject);
  });
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_PATH || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const problems = [];
const fetched = new Set();
try {
  const page = await browser.newPage();
  page.on("request", (r) => fetched.add(r.url()));
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("console", (m) => { if (m.type() === "error") problems.push(`console error: ${m.text()}`); });
  await page.goto(url, { waitUntil: "load" });
  await page.waitForSelector("body[data-hydrated=true]", { timeout: 60000 })
    .catch(() => problems.push("the page's own code did not take over (body[data-hydrated]) within 60 s"));
  await page.waitForLoadState("networkidle");
} finally {
  await browser.close();
}

const origin = new URL(url).origin;
const files = [];
for (const u of fetched) {
  if (!u.startsWith(origin)) continue;
  const w = await weigh(u);
  if (w.status !== 200) problems.push(`${u} answered HTTP ${w.status}`);
  files.push({
    path: u.slice(origin.length) || "/", gzip_bytes: w.bytes, encoding: w.headers["content-encoding"] ?? null,
    cache_control: w.headers["cache-control"] ?? null,
  });
}
const total = files.reduce((s, f) => s + f.gzip_bytes, 0);
const modules = files.filter((f) => f.path.endsWith(".wasm")).sort((a, b) => b.gzip_bytes - a.gzip_bytes);
const largest = modules[0] ?? null;
if (!largest) problems.push("the first load fetched no wasm module");
if (budget.total !== null && total > budget.total) {
  problems.push(`first load of ${url}: ${total} bytes gzip, over its budget of ${budget.total}`);
}
if (budget.module !== null && largest && largest.gzip_bytes > budget.module) {
  problems.push(`largest wasm module ${largest.path}: ${largest.gzip_bytes} bytes gzip, over its budget of ${budget.module}`);
}
console.log(JSON.stringify({ url, files, total_gzip_bytes: total, largest_module: largest, budget, problems }));
const over = (n, b) => `${n.toLocaleString("en")} B${b === null ? "" : ` (budget ${b.toLocaleString("en")})`}`;
console.error(`  ${url}: first load ${over(total, budget.total)} in ${files.length} files, largest module ` +
  `${largest ? `${largest.path} ${over(largest.gzip_bytes, budget.module)}` : "none"}`);
if (problems.length) {
  console.error(problems.join("\n"));
  process.exitCode = 1;
}
