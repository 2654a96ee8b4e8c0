// Takes a full-page screenshot of a running dashboard page once it has hydrated:
//   node end2end/screenshot.mjs http://127.0.0.1:3000/ docs/overview.png
import { chromium } from "playwright-core";

const [url = "http://127.0.0.1:3000/", out = "overview.png"] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_PATH || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 640 } });
  await page.goto(url, { waitUntil: "load" });
  await page.waitForSelector("body[data-hydrated=true]", { timeout: 30000 });
  await page.screenshot({ path: out, fullPage: true });
  console.log(`wrote ${out}`);
} finally {
  await browser.close();
}
