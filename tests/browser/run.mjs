// Run every scenario in a real browser, once per language, each against that
// language's own `idbridge serve --dev` (so each run starts from an empty broker).
// Usage: node tests/browser/run.mjs LANG=BROKER_URL,SIMULATOR_URL[,SPA_ORIGIN] [LANG=…]
//   e.g. node tests/browser/run.mjs en=http://127.0.0.1:8080,http://127.0.0.1:8081,http://127.0.0.1:8082
// SPA_ORIGIN: where this runner serves the single-page app (tests/browser/spa/)
// of the SPA scenario, the origin the broker was started with (`--spa-origin`);
// without it that scenario fails.
// $SHOTS: a folder for full-page screenshots (<page>.<lang>.png).
// $ONLY: run only the scenarios whose name contains this text.
// Prints one line per scenario, then "N passed, M failed"; exits 1 on a failure.
import { mkdirSync, readdirSync } from "node:fs";
import { launch, Run } from "./lib.mjs";
import { scenarios as core } from "./scenarios.mjs";
import { startSpa } from "./spa.mjs";

// The broker's own pages (scenarios.mjs), then one file per group of sign-in
// methods in scenarios/ (in name order), each exporting its `scenarios`. A group
// that also exports `peers` runs against a broker of its own: `peers({ lang })`
// starts it (and the upstreams it signs in through) before the group's first
// scenario and resolves to `{ broker, close, tails, … }`, handed to the
// scenarios as `run.peers` (its broker as `run.broker`); `close()` stops them
// after the group's last one (tests/browser/peers.mjs).
const groups = [{ name: "scenarios.mjs", scenarios: core }];
const dir = new URL("./scenarios/", import.meta.url);
for (const file of readdirSync(dir).filter((f) => f.endsWith(".mjs")).sort()) {
  const group = await import(new URL(file, dir));
  groups.push({ name: file, scenarios: group.scenarios, peers: group.peers });
}

const SCENARIO_TIMEOUT_MS = 60_000;

const targets = process.argv.slice(2).map((arg) => {
  const m = arg.match(/^([A-Za-z-]+)=(http:\/\/127\.0\.0\.1:\d+),(http:\/\/127\.0\.0\.1:\d+)(?:,(http:\/\/127\.0\.0\.1:\d+))?$/);
  if (!m) {
    console.error(`usage: node run.mjs LANG=BROKER_URL,SIMULATOR_URL[,SPA_ORIGIN] … (127.0.0.1 only); got ${arg}`);
    process.exit(2);
  }
  return { lang: m[1], broker: m[2], sim: m[3], spa: m[4] };
});
if (!targets.length) {
  console.error("usage: node run.mjs LANG=BROKER_URL,SIMULATOR_URL …");
  process.exit(2);
}
const shots = process.env.SHOTS || undefined;
if (shots) mkdirSync(shots, { recursive: true });
const only = process.env.ONLY;

const browser = await launch();
let passed = 0;
let failed = 0;
const started = Date.now();
for (const { lang, broker, sim, spa } of targets) {
  const spaServer = spa ? await startSpa(spa, broker) : null;
  for (const group of groups) {
    const chosen = group.scenarios.filter((s) => !only || s.name.includes(only));
    if (!chosen.length) continue;
    let peers = null;
    if (group.peers) {
      try {
        peers = await group.peers({ lang });
      } catch (e) {
        for (const scenario of chosen) {
          failed++;
          console.log(`FAIL  [${lang}] ${scenario.name}`);
        }
        console.log(`    cannot start ${group.name}'s peers: ${String(e.message ?? e).split("\n").join("\n    ")}`);
        continue;
      }
    }
    try {
      ({ passed, failed } = await runGroup(chosen, { lang, broker: peers?.broker ?? broker, sim, spa, peers }, { passed, failed }));
    } finally {
      await peers?.close();
    }
  }
  spaServer?.close();
}
await browser.close();
console.log(`browser scenarios took ${((Date.now() - started) / 1000).toFixed(1)} s`);
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);

/// Run `scenarios` one after the other, each in fresh browser contexts, counting
/// into `counts`.
async function runGroup(scenarios, { lang, broker, sim, spa, peers }, counts) {
  let { passed, failed } = counts;
  for (const scenario of scenarios) {
    const run = new Run({ browser, broker, sim, spa, lang, shots, peers });
    const t0 = Date.now();
    let timer;
    try {
      await Promise.race([
        scenario.run(run),
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error(`timed out after ${SCENARIO_TIMEOUT_MS / 1000} s`)), SCENARIO_TIMEOUT_MS);
        }),
      ]);
      if (run.offsite.length) throw new Error(`the browser tried to leave 127.0.0.1 and localhost: ${[...new Set(run.offsite)].join(", ")}`);
      if (run.problems.length) throw new Error(run.problems.join("\n"));
      passed++;
      console.log(`ok    [${lang}] ${scenario.name} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
    } catch (e) {
      failed++;
      console.log(`FAIL  [${lang}] ${scenario.name}`);
      console.log(`    ${String(e.message ?? e).split("\n").join("\n    ")}`);
      if (run.problems.length) console.log(`    and on the way:\n      ${run.problems.join("\n      ")}`);
      console.log(`    what the browser showed:\n${await run.describe()}`);
      if (peers) console.log(`    the group's peers:\n${peers.tails()}`);
      if (shots) {
        const pages = run.contexts.flatMap((c) => c.pages());
        const last = pages[pages.length - 1];
        if (last) await last.screenshot({ path: `${shots}/FAILED-${lang}-${passed + failed}.png`, fullPage: true }).catch(() => {});
      }
    } finally {
      clearTimeout(timer);
      await run.close();
    }
  }
  return { passed, failed };
}
