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
  const wasmName = /\/pkg\/[^"']+\.wasm/.exec(html)?.[0] ?? "/pkg/rollout-dashboard.wasm";
  const wasm = await fetch(BASE + wasmName, { headers: { "accept-encoding": "br" } });
  assert.equal(wasm.status, 200);
  assert.equal(wasm.headers.get("content-encoding"), "br");
});
