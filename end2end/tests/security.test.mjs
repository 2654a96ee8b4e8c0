// Headers every response carries, compression, and a Content-Security-Policy that the pages
// really live with (the other tests fail on any console error, which is where CSP violations go).
import { test } from "node:test";
import assert from "node:assert/strict";
import { BASE } from "../lib.mjs";

test("pages carry a nonce CSP that their scripts match, and everything is compressed", async () => {
  const page = await fetch(BASE + "/", { headers: { "accept-encoding": "gzip, br" } });
  assert.equal(page.status, 200);
  const csp = page.headers.get("content-security-policy");
  const nonce = /'nonce-([^']+)'/.exec(csp)?.[1];
  assert.ok(nonce, csp);
  assert.doesNotMatch(csp, /script-src[^;]*'unsafe-inline'/);
  assert.match(csp, /frame-ancestors 'none'/);
  const html = await page.text();
  const scripts = [...html.matchAll(/<script([^>]*)>/g)].map((m) => m[1]);
  assert.ok(scripts.length > 0);
  for (const attrs of scripts) assert.match(attrs, new RegExp(`nonce="${nonce}"`), `every script carries the nonce: ${attrs}`);
  assert.match(page.headers.get("content-encoding") ?? "", /^(br|gzip)$/);
  assert.equal(page.headers.get("x-content-type-options"), "nosniff");
  assert.equal(page.headers.get("referrer-policy"), "same-origin");
  // A second response has another nonce.
  const again = (await fetch(BASE + "/")).headers.get("content-security-policy");
  assert.notEqual(/'nonce-([^']+)'/.exec(again)?.[1], nonce);

  const api = await fetch(BASE + "/api/v1/status", { headers: { "accept-encoding": "gzip" } });
  assert.equal(api.headers.get("content-encoding"), "gzip");
  assert.match(api.headers.get("content-security-policy"), /^default-src 'none'/);
  // Built assets carry content hashes in their names and are cached for a year; the page is not.
  assert.equal(page.headers.get("cache-control"), "no-store");
  assert.equal(api.headers.get("cache-control"), "no-store");
  const assets = [...new Set([...html.matchAll(/\/pkg\/[^"'\s>]+?\.(?:css|js|wasm)/g)].map((m) => m[0]))];
  for (const ext of ["css", "js", "wasm"]) {
    assert.ok(assets.some((a) => a.endsWith("." + ext)), `the page names its ${ext}: ${assets}`);
  }
  for (const a of assets) {
    // The main files and the per-page wasm chunks the page preloads, each with its content hash.
    assert.match(a, /^\/pkg\/[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{16,}\.(css|js|wasm)$/, "a content-hashed name");
    const r = await fetch(BASE + a, { headers: { "accept-encoding": "br" } });
    assert.equal(r.status, 200, a);
    assert.equal(r.headers.get("content-encoding"), "br", a);
    assert.equal(r.headers.get("cache-control"), "public, max-age=31536000, immutable", a);
  }
  const missing = await fetch(BASE + "/pkg/rollout-dashboard.0000000000000000.wasm");
  assert.equal(missing.status, 404);
  assert.equal(missing.headers.get("cache-control"), "no-store");
});
