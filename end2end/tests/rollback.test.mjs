// The guided rollback from the browser (last in end2end/order.txt: it downgrades the e2e diary).
// An operator enters the previous revision in the deploy journal, reads the dry run, types the
// confirmations, starts the run and watches every step turn green; the incident record exists.
// Prometheus is already stopped by sources_down (before it in the order): the run must not need it.
import { test, before, after } from "node:test";
import { execFileSync } from "node:child_process";
import path from "node:path";
import assert from "node:assert/strict";
import { BASE, SIM, KUBE_TOKEN, launch, signedIn as signedInTo } from "../lib.mjs";

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

const signedIn = (user, password) => signedInTo(browser, user, password, "/rollback");

// The diary, read as the tests' own client (psql), and the categories as src/server/categories.rs
// defines them.
const psql = (sql) => execFileSync("psql", ["-tAq", process.env.E2E_DIARY_URL, "-c", sql]).toString().trim();
const CATEGORY = `CASE WHEN dose IS NOT NULL AND insulin_short = dose AND insulin_long = dose THEN 'doubled'
  WHEN insulin_short IS NOT NULL AND insulin_long IS NOT NULL THEN 'both'
  WHEN insulin_short IS NOT NULL THEN 'short_only' WHEN insulin_long IS NOT NULL THEN 'long_only'
  WHEN dose IS NOT NULL THEN 'legacy_only' ELSE 'empty' END`;
const ROW_HASH = "md5(concat_ws('|', id, user_id, created_at, dose, insulin_short, insulin_long))";

const state = (page, name) => page.locator(`[data-testid="step-${name}"]`).getAttribute("data-state");

test("a viewer sees the rollback disabled, with the reason", async () => {
  const { context, page } = await signedIn("bo", "viewer-demo");
  assert.match(await page.locator('[data-testid="rollback-disabled"]').innerText(), /only operators may run a rollback/);
  assert.ok(await page.locator('[data-testid="start-rollback"]').isDisabled());
  assert.ok(await page.locator('[data-testid="deploy-record"]').isDisabled());
  await context.close();
});

test("an operator runs the whole rollback from the page and every step turns green", async () => {
  const { context, page, problems } = await signedIn("ana", "operator-demo");
  const pre = page.locator('[data-testid="pre-previous_revision_known"]');
  assert.match(await pre.innerText(), /does not know the revision before b7e9d1c0f2a3/);
  assert.ok(await page.locator('[data-testid="start-rollback"]').isDisabled());

  // The deploy journal learns the previous revision.
  await page.fill('[data-testid="deploy-previous"]', "a1f3c2d4e5b6");
  await page.click('[data-testid="deploy-record"]');
  await page.locator('[data-testid="deploy-result"]').waitFor();
  await page.waitForFunction(() => document.querySelector('[data-testid="pre-previous_revision_known"]')?.classList.contains("guard-ok"));

  // The dry run names the real command.
  assert.match(await page.locator('[data-testid="plan-schema_downgrade"]').innerText(), /downgrade a1f3c2d4e5b6/);
  // The plan's survey is for signed-in callers: the operator's session cookie.
  const cookie = (await context.cookies()).map((c) => `${c.name}=${c.value}`).join("; ");
  const plan = await (await fetch(BASE + "/api/v1/rollback/plan", { method: "POST", headers: { origin: BASE, cookie } })).json();
  assert.equal(plan.ready, true, JSON.stringify(plan.preconditions));

  await page.fill('[data-testid="rollback-reason"]', "doubled doses in the BI report");
  await page.fill('[data-testid="ack-rows"]', String(plan.data_loss_rows));
  await page.fill('[data-testid="confirm-env"]', "production");
  assert.ok(await page.locator('[data-testid="start-rollback"]').isDisabled(), "the wrong environment name keeps it disabled");
  await page.fill('[data-testid="confirm-env"]', "e2e");
  // Every record as it is before the rollback, by category and hash (compared after the roll-forward).
  psql(`DROP TABLE IF EXISTS e2e_round_trip; CREATE TABLE e2e_round_trip AS SELECT id, ${CATEGORY} AS category, ${ROW_HASH} AS hash, dose FROM history_records`);
  await page.click('[data-testid="start-rollback"]');

  // Live progress: every step done (restore not chosen), the run done.
  await page.waitForFunction(
    () => document.querySelector('[data-testid="run-state"]')?.innerText.endsWith(": done"),
    null, { timeout: 120000 },
  );
  for (const name of ["stop_writers", "flag_off", "archive_split_values", "schema_downgrade", "verify_schema", "scale_writers_back", "smoke_checks", "incident_record"]) {
    assert.equal(await state(page, name), "done", name);
  }
  for (const name of ["fill_dose", "restore_data", "reinsert_dropped_rows"]) {
    assert.equal(await state(page, name), "not_chosen", name);
  }
  await page.screenshot({ path: ".artifacts/rollback-done.png", fullPage: true });

  // The world: flag 0, writers back at 3, the split columns gone.
  const cm = await (await fetch(`${SIM}/api/v1/namespaces/diabetes/configmaps/feature-flags`, {
    headers: { authorization: `Bearer ${KUBE_TOKEN}` },
  })).json();
  assert.equal(cm.data.insulin_dose_split, "0%"); // the format the rollout test left (25%), written 0% by the autopilot's kill
  let status;
  for (let i = 0; i < 40; i++) { // answers are cached for one refresh interval
    status = await (await fetch(BASE + "/api/v1/status")).json();
    if (status.schema.alembic_revision === "a1f3c2d4e5b6") break;
    await new Promise((r) => setTimeout(r, 250));
  }
  assert.equal(status.schema.alembic_revision, "a1f3c2d4e5b6");
  assert.equal(status.schema.insulin_short, false);
  assert.equal(status.writer.replicas, 3);

  // The incident record, as Markdown.
  const href = await page.locator('[data-testid="incident-link"]').getAttribute("href");
  const md = await (await fetch(BASE + href)).text();
  assert.match(md, /^# Incident: rollback of insulin_dose_split in e2e/);
  assert.match(md, /doubled doses in the BI report/);
  assert.match(md, /## Postmortem/);
  assert.deepEqual(problems, []);
  await context.close();
});

// Issue 33: the run archived every split value before the downgrade; once the split revision is
// deployed again (here: alembic upgrade head, as the diary service's deploy would), the roll-forward
// puts them back from the page: dry run, reason, environment and count typed.

test("after the rollback, an operator rolls forward from the page and every fixture split value is back", async () => {
  // The rollback dropped the columns: none of the fixture's split values is readable now.
  assert.equal(psql("SELECT count(*) FROM information_schema.columns WHERE table_name = 'history_records' AND column_name LIKE 'insulin_%'"), "0");
  execFileSync(path.resolve("../demo/.venv/bin/alembic"), ["-c", "alembic/alembic.ini", "upgrade", "head"], {
    cwd: "../demo/services/api", env: { ...process.env, DATABASE_URL: process.env.E2E_DIARY_URL }, stdio: "pipe",
  });
  const { context, page, problems } = await signedIn("ana", "operator-demo");
  await page.locator('[data-testid="roll-forward-dry-run"]').click();
  const plan = page.locator('[data-testid="roll-forward-plan"]');
  await plan.waitFor();
  const planText = await plan.innerText();
  // The fixture's doubled row and the writers' faulty clients' ones: never brought back.
  const doubled = /skipped doubled\s+doubled\s+(\d+)/.exec(planText);
  assert.ok(doubled && Number(doubled[1]) >= 1, planText);
  const restorable = Number(/Dry run: (\d+) row\(s\) would be written/.exec(planText)[1]);
  assert.ok(restorable >= 10, `the fixture's 10 non-doubled split rows at least: ${planText}`);
  await page.fill('[data-testid="roll-forward-reason"]', "split revision redeployed after the fix");
  await page.fill('[data-testid="roll-forward-env"]', "e2e");
  await page.fill('[data-testid="roll-forward-ack"]', String(restorable + 1));
  assert.ok(await page.locator('[data-testid="roll-forward-apply"]').isDisabled(), "a wrong count keeps it disabled");
  await page.fill('[data-testid="roll-forward-ack"]', String(restorable));
  await page.locator('[data-testid="roll-forward-apply"]').click();
  const done = page.locator('[data-testid="roll-forward-done"]');
  await done.waitFor();
  assert.match(await done.innerText(), new RegExp(`Rolled forward: ${restorable} row\\(s\\) written .*verified: .*checksum`));
  await page.locator("#roll-forward").screenshot({ path: ".artifacts/roll-forward.png" });

  // The fixture's split rows, read from the diary: each back with its exact values; the
  // doubled one stays legacy (its dose), never doubled again.
  // The fixture is the diary's first 15 rows (loaded before any writer starts).
  const back = (where) => psql(`SELECT count(*) FROM history_records WHERE id <= 15 AND ${where}`);
  assert.equal(back("insulin_short IS NOT NULL AND insulin_long IS NULL AND dose IS NULL"), "5", "short only");
  assert.equal(back("insulin_short IS NULL AND insulin_long IS NOT NULL AND dose IS NULL"), "2", "long only");
  assert.equal(back("insulin_short IS NOT NULL AND insulin_long IS NOT NULL AND dose IS NULL"), "3", "both parts");
  assert.equal(back("user_id = 7 AND insulin_short = 4.5 AND insulin_long = 6.0"), "1", "the smoke example, exact");
  assert.equal(back("user_id = 10 AND dose = 4.0 AND insulin_short IS NULL AND insulin_long IS NULL"), "1", "the doubled row stays legacy");
  assert.equal(back("dose IS NOT NULL AND insulin_short IS NULL AND insulin_long IS NULL"), "4", "legacy: 3 and the doubled one");
  assert.equal(psql("SELECT count(*) FROM history_records WHERE dose IS NOT NULL AND insulin_short = dose AND insulin_long = dose"), "0", "nothing doubled");

  // Every record that existed before the rollback, by the category it had: back identical (its
  // hash), or, doubled, back as a legacy row with its dose. Rows lost: 0 in every category; the
  // guide's plan (downgrade without the archive) loses every split row's values.
  const rows = psql(`SELECT b.category, count(*), count(*) FILTER (WHERE a.hash = b.hash),
      count(*) FILTER (WHERE b.category = 'doubled' AND a.category = 'legacy_only' AND a.dose = b.dose),
      count(*) FILTER (WHERE a.id IS NULL)
    FROM e2e_round_trip b LEFT JOIN (SELECT id, ${CATEGORY} AS category, ${ROW_HASH} AS hash, dose FROM history_records) a USING (id)
    GROUP BY 1 ORDER BY 1`).split("\n").map((l) => l.split("|"));
  const table = Object.fromEntries(rows.map(([c, n, same, legacy, gone]) => [c, { rows: +n, same: +same, legacy: +legacy, gone: +gone }]));
  console.log("round trip by category (rows, identical, doubled kept legacy, gone):", JSON.stringify(table));
  for (const [c, t] of Object.entries(table)) {
    assert.equal(t.gone, 0, `${c}: none gone`);
    assert.equal(t.same + t.legacy, t.rows, `${c}: every row back as it was (or, doubled, as legacy)`);
  }
  for (const c of ["short_only", "long_only", "both", "legacy_only", "doubled"]) assert.ok(table[c]?.rows > 0, `${c} is in the round trip`);
  assert.equal(table.doubled.legacy, table.doubled.rows);
  assert.deepEqual(problems, []);
  await context.close();
});

// Issue 33, item 5: a rehearsal from the page, on the newest backup (the world's pg_dump of the
// split diary): restored into a scratch database, rolled back and forward there, every record back.
test("an operator rehearses the rollback from the page; the copy loses no record and the page says when it passed", async () => {
  const { context, page, problems } = await signedIn("ana", "operator-demo");
  const summary = page.locator('[data-testid="rehearsal-summary"]');
  assert.match(await summary.innerText(), /never rehearsed/);
  const liveBefore = psql(`SELECT count(*), sum(('x' || left(${ROW_HASH}, 16))::bit(64)::bigint::numeric) FROM history_records`);
  await page.check('[data-testid="rehearse-fill"]');
  await page.click('[data-testid="rehearse"]');
  await page.waitForFunction(
    () => ["passed", "failed"].includes(document.querySelector('[data-testid="rehearsal-summary"]')?.dataset.state),
    null, { timeout: 120000 },
  );
  const text = await summary.innerText();
  assert.match(text, /^rehearsed less than a minute ago on the backup of \d{4}-\d\d-\d\d \d\d:\d\d UTC, \d+ s, passed$/, text);
  const parts = await page.locator('[data-testid="rehearsal-parts"] tbody tr').evaluateAll((rows) => rows.map((r) => r.dataset.part));
  assert.deepEqual(parts, ["restore", "read", "archive", "fill", "downgrade", "verify", "upgrade", "reapply", "compare"]);
  // The fixture's categories in the backup, each back: nothing changed or gone.
  const cats = await page.locator('[data-testid="rehearsal-categories"] tbody tr').evaluateAll((rows) =>
    Object.fromEntries(rows.map((r) => [r.dataset.category, [...r.querySelectorAll("td.num")].map((td) => Number(td.innerText))])));
  for (const c of ["short_only", "long_only", "both", "legacy_only", "doubled"]) assert.ok(cats[c], `${c}: ${JSON.stringify(cats)}`);
  for (const [c, [rows, same, legacy, changed, gone]] of Object.entries(cats)) {
    assert.equal(changed + gone, 0, c);
    assert.equal(same + legacy, rows, c);
  }
  assert.equal(cats.short_only[5], cats.short_only[0], "the guide's plan loses every short-only row's values");
  await page.locator("#rollback-rehearsal").screenshot({ path: ".artifacts/rehearsal.png" });
  // The live diary is as it was.
  assert.equal(psql(`SELECT count(*), sum(('x' || left(${ROW_HASH}, 16))::bit(64)::bigint::numeric) FROM history_records`), liveBefore);
  assert.deepEqual(problems, []);
  await context.close();
});
