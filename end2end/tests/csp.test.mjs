// Issue 13: now and then a page arrived with the CSP meant for JSON (no styles, no scripts, no
// hydration), most often right after the sign-in form's redirect. Here the browser goes through
// that flow for every page, several sign-ins at a time, and every HTML document it receives (the
// sign-in page, the redirect's target, a reload, a page not found) must carry the page policy
// whose nonce every script of the document carries, and the page must hydrate.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { BASE, hydrated, launch } from "../lib.mjs";

// Async pages, the sign-in page (out-of-order streaming) and the fallback's page not found.
const PAGES = ["/", "/rollout", "/rollback", "/audit", "/reports"];
const ROUNDS = Number(process.env.E2E_CSP_ROUNDS || 2);
const AT_ONCE = 3;
const PAGE_POLICY = /^default-src 'self'; script-src 'self' 'nonce-([A-Za-z0-9_-]{16,})' 'wasm-unsafe-eval';/;

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

/** Every HTML document the page receives, with its CSP and the scripts that lack its nonce. */
function recordDocuments(page) {
  const pending = [];
  page.on("response", (r) => {
    if (r.request().resourceType() !== "document" || (r.status() >= 300 && r.status() < 400)) return;
    pending.push((async () => {
      const csp = (await r.allHeaders())["content-security-policy"];
      const html = await r.text();
      const nonce = PAGE_POLICY.exec(csp ?? "")?.[1];
      const scripts = [...html.matchAll(/<script([^>]*)>/g)].map((m) => m[1]);
      const unmatched = scripts.filter((attrs) => !nonce || !attrs.includes(`nonce="${nonce}"`));
      return { url: r.url(), status: r.status(), csp, scripts: scripts.length, unmatched };
    })());
  });
  return () => Promise.all(pending);
}

async function signInAndLand(path) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const documents = recordDocuments(page);
  try {
    await page.goto(BASE + "/login?next=" + encodeURIComponent(path));
    await hydrated(page);
    await page.fill('input[name="username"]', "bo");
    await page.fill('input[name="password"]', "viewer-demo");
    await page.click('[data-testid="login-submit"]');
    await page.waitForURL(BASE + path);
    const first = await hydrated(page).then(() => true, () => false);
    await page.reload();
    const again = await hydrated(page).then(() => true, () => false);
    await page.goto(BASE + "/no-such-page");
    return { path, hydrated: first && again, docs: await documents() };
  } finally {
    await context.close();
  }
}

test("every HTML document of every page carries the page CSP its scripts match, through sign-in, redirect and reload", async () => {
  const flows = [];
  for (let round = 0; round < ROUNDS; round++) {
    for (const path of PAGES) {
      // AT_ONCE sign-ins landing on the same page at the same time.
      flows.push(...(await Promise.all(Array.from({ length: AT_ONCE }, () => signInAndLand(path)))));
    }
  }
  const bad = [];
  let documents = 0;
  for (const { path, hydrated, docs } of flows) {
    if (!hydrated) bad.push(`${path}: did not hydrate; documents: ${JSON.stringify(docs)}`);
    // The sign-in page, the landing page, its reload and the page not found.
    if (docs.length < 4) bad.push(`${path}: ${docs.length} documents seen: ${JSON.stringify(docs)}`);
    for (const d of docs) {
      documents++;
      if (!PAGE_POLICY.test(d.csp ?? "")) bad.push(`${d.url} (${d.status}) arrived with CSP ${d.csp}`);
      else if (d.scripts === 0 || d.unmatched.length) bad.push(`${d.url}: scripts without the policy's nonce: ${d.unmatched}`);
    }
  }
  assert.deepEqual(bad, [], `${bad.length} problems in ${flows.length} sign-ins`);
  assert.equal(flows.length, ROUNDS * PAGES.length * AT_ONCE);
  console.log(`# ${flows.length} sign-ins, ${documents} HTML documents, each with the page CSP and its nonce`);
});
