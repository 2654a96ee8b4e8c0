// Shared by the end2end tests: the world scripts/test started, and a headless Debian Chromium.
import assert from "node:assert/strict";
import { chromium } from "playwright-core";

export const BASE = process.env.E2E_BASE_URL;
export const SIM = process.env.E2E_SIM_URL;
export const KUBE_TOKEN = process.env.E2E_KUBE_TOKEN;
export const PROM_PID = Number(process.env.E2E_PROMETHEUS_PID);
export const PROM_URL = process.env.E2E_PROMETHEUS_URL;
assert.ok(BASE && SIM && KUBE_TOKEN && PROM_PID, "run through scripts/test, which sets E2E_* variables");

/** The flags that work here as root (see ../shared/toolchain.md). */
export function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM_PATH || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
}

/** Opens `path` in a new page that collects script errors, console errors and HTTP errors. */
export async function open(browserOrContext, path = "/") {
  const page = await browserOrContext.newPage();
  const problems = [];
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("console", (m) => { if (m.type() === "error") problems.push(`console: ${m.text()}`); });
  page.on("response", (r) => { if (r.status() >= 400) problems.push(`HTTP ${r.status()} for ${r.url()}`); });
  const response = await page.goto(BASE + path, { waitUntil: "load" });
  assert.equal(response.status(), 200);
  return { page, problems };
}

// Every SVG in a page's HTML: inline, and inside the hydration scripts in whatever escaping they use.
export const svgsIn = (html) => (html.match(/<svg|\\u003csvg|\\x3csvg|&lt;svg/gi) ?? []).length;

/** Waits until the page's own code has taken over (its wasm chunk loaded and hydrated). Leave a
 *  page only after this: navigating away while a chunk still loads aborts it, and the dying page
 *  reports the aborted load as a console error (a panic in the lazy-route loader). 60 s: twice
 *  on 2026-12-06 a page of the debug build took longer than 30 s to hydrate on the shared two
 *  cores (1 of 30 sign-ins in the CSP test; once in the rollout test), with every document
 *  correct; what a page weighs and how fast it loads is judged on the release build (budgets). */
export const hydrated = (page) => page.waitForSelector("body[data-hydrated=true]", { timeout: 60000 });

export const text = (page, id) => page.locator(`[data-testid="${id}"]`).first().innerText();

/** Signs `user` in through the login form in a fresh context and lands on `path`, hydrated.
 *  `problems` collects script and console errors from then on. */
export async function signedIn(browser, user, password, path) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const problems = [];
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("console", (m) => { if (m.type() === "error") problems.push(`console: ${m.text()}`); });
  await page.goto(BASE + "/login?next=" + encodeURIComponent(path));
  await hydrated(page);
  await page.fill('input[name="username"]', user);
  await page.fill('input[name="password"]', password);
  await page.click('[data-testid="login-submit"]');
  await page.waitForURL(BASE + path);
  try {
    await hydrated(page);
  } catch (e) {
    // Say what the browser reported while the page did not hydrate (a panic, a failed chunk).
    e.message += `\nbrowser problems on ${path} as ${user}: ${JSON.stringify(problems)}`;
    throw e;
  }
  return { context, page, problems };
}
