// The kill switch pressed in a real browser page, with a session cookie taken before (so that it
// works while the state database is down, when nobody can sign in). Prints one JSON line:
// the result line the page shows and the seconds from the click on Confirm to that line.
// Used by scripts/proof faults. Usage: node kill-in-browser.mjs BASE_URL "rd_session=…" REASON
import { chromium } from "playwright-core";

const [base, cookie, reason] = process.argv.slice(2);
const [name, ...rest] = cookie.split("=");
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_PATH || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"],
});
const problems = [];
try {
  const context = await browser.newContext();
  await context.addCookies([{ name, value: rest.join("="), url: base }]);
  const page = await context.newPage();
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  await page.goto(`${base}/rollout`, { waitUntil: "load" });
  await page.waitForSelector("body[data-hydrated=true]", { timeout: 60000 });
  await page.fill('[data-testid="kill-reason"]', reason);
  await page.click('[data-testid="kill"]');
  const started = Date.now();
  await page.click('[data-testid="confirm"]');
  const result = await page.locator('[data-testid="rollout-result"]').innerText({ timeout: 30000 });
  console.log(JSON.stringify({ result, seconds: (Date.now() - started) / 1000, problems }));
} catch (e) {
  console.log(JSON.stringify({ error: String(e), problems }));
  process.exitCode = 1;
} finally {
  await browser.close();
}
