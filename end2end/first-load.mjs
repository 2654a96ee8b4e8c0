// Prints, one per line, every URL the browser fetches for the first load of a page until it is
// hydrated (the page, its CSS and JS, the main wasm and the wasm chunks the page needs).
// Used by scripts/proof to weigh the first load as served. Usage: node first-load.mjs URL
import { chromium } from "playwright-core";

const url = process.argv[2];
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_PATH || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const page = await browser.newPage();
  const fetched = new Set();
  const errors = [];
  page.on("request", (r) => fetched.add(r.url()));
  page.on("pageerror", (e) => errors.push(e.message));
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  await page.goto(url, { waitUntil: "load" });
  await page.waitForSelector("body[data-hydrated=true]", { timeout: 60000 });
  await page.waitForLoadState("networkidle");
  if (errors.length) {
    console.error(errors.join("\n"));
    process.exitCode = 1;
  }
  for (const u of fetched) console.log(u);
} finally {
  await browser.close();
}
