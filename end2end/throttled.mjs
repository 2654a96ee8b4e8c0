// The first load of a page as a phone on a poor connection sees it: Chromium's network emulation
// (1.6 Mbit/s down, 750 kbit/s up, 150 ms round trip), a fresh cache. Prints one JSON line:
// milliseconds from the start of navigation to the values on screen (the first contentful paint,
// which waits for the stylesheet, and `selector` visible) and to working controls (the page's own
// code has taken over: body[data-hydrated=true]). Used by scripts/proof.
// Usage: node throttled.mjs URL [SELECTOR]
import { chromium } from "playwright-core";

const url = process.argv[2];
const selector = process.argv[3] || '[data-testid="headline-flag"]';
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_PATH || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const context = await browser.newContext();
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  const cdp = await context.newCDPSession(page);
  await cdp.send("Network.enable");
  await cdp.send("Network.setCacheDisabled", { cacheDisabled: true });
  await cdp.send("Network.emulateNetworkConditions", {
    offline: false, latency: 150, downloadThroughput: 1_600_000 / 8, uploadThroughput: 750_000 / 8,
  });
  const bytes = { total: 0 };
  cdp.on("Network.loadingFinished", (e) => { bytes.total += e.encodedDataLength; });
  // The moment the page's code marks the body hydrated, taken in the page itself.
  await page.addInitScript(() => {
    new MutationObserver(() => {
      if (document.body?.dataset.hydrated === "true" && !window.__hydratedAt) window.__hydratedAt = performance.now();
    }).observe(document, { attributes: true, subtree: true, attributeFilter: ["data-hydrated"] });
  });
  await page.goto(url, { waitUntil: "commit" });
  await page.waitForSelector(selector, { state: "visible", timeout: 60000 });
  await page.waitForSelector("body[data-hydrated=true]", { timeout: 60000 });
  const t = await page.evaluate((sel) => {
    const nav = performance.getEntriesByType("navigation")[0];
    const fcp = performance.getEntriesByName("first-contentful-paint")[0];
    return {
      html_ms: Math.round(nav.responseEnd),
      fcp_ms: fcp ? Math.round(fcp.startTime) : null,
      hydrated_ms: Math.round(window.__hydratedAt),
      selector: sel,
    };
  }, selector);
  await page.waitForLoadState("networkidle");
  console.log(JSON.stringify({ url, ...t, values_ms: t.fcp_ms, controls_ms: t.hydrated_ms, transferred_bytes: bytes.total, errors }));
} finally {
  await browser.close();
}
