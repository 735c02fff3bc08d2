/**
 * `launch bench`: real runs (weak scaling of the tiny config on 1 and 2 workers, a small all-reduce sweep, a small
 * training step), their JSON output, and their HTML reports opened in headless Chromium (Debian's `chromium`,
 * driven by puppeteer-core): no console errors, no network requests, every chart drawn with data pixels.
 * Also: bad arguments exit with code 2 and a clear message, and hostile strings in a report stay text.
 */
import { after, test } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import * as puppeteer from "puppeteer-core";
import { EXIT_CONFIG } from "../shared/exit-codes";
import { renderHtmlReport, type Report } from "../launch/bench/report";
import type { ScalingResult } from "../launch/bench/scaling";
import type { AllreduceResult } from "../launch/bench/allreduce";
import type { StepResult } from "../launch/bench/step";
import { runLaunch, tempDir, TEST_CACHE_DIR, TINY_CONFIG } from "./helpers/launch";
import { makePki, opensslUnavailable } from "./helpers/pki";

const CHROMIUM = process.env.RINGTRAIN_CHROMIUM ?? "/usr/bin/chromium";

/** What the page showed: console messages and errors, requests, the charts marker, and each canvas's pixels. */
interface PageCheck {
  errors: string[];
  requests: string[];
  rendered: string | undefined;
  canvases: { width: number; height: number; painted: number; seriesColour: number }[];
  text: string;
  dialogs: string[];
}

// In the page: counts painted pixels and pixels of the first series' colour (#0072B2) per canvas.
const CANVAS_PROBE = `(() => [...document.querySelectorAll("canvas")].map((c) => {
  const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
  let painted = 0, seriesColour = 0;
  for (let i = 0; i < d.length; i += 4) {
    if (d[i + 3] === 0) continue;
    painted++;
    if (Math.abs(d[i]) < 40 && Math.abs(d[i + 1] - 114) < 40 && Math.abs(d[i + 2] - 178) < 40) seriesColour++;
  }
  return { width: c.width, height: c.height, painted, seriesColour };
}))()`;

let browser: Promise<puppeteer.Browser> | undefined;
after(async () => {
  if (browser !== undefined) await (await browser).close();
});

/** One headless Chromium for all tests (started on first use). */
function chromium(): Promise<puppeteer.Browser> {
  if (!fs.existsSync(CHROMIUM)) {
    assert.fail(`Chromium not found at ${CHROMIUM}: the report test needs Debian's chromium (apt-get install -y chromium; CI's .ci/run installs it), or set RINGTRAIN_CHROMIUM`);
  }
  // --no-sandbox: tests run as root, where Chromium's sandbox cannot start
  browser ??= puppeteer.launch({ executablePath: CHROMIUM, headless: true, args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"] });
  return browser;
}

async function openReport(file: string): Promise<PageCheck> {
  const page = await (await chromium()).newPage();
  try {
    const errors: string[] = [];
    const requests: string[] = [];
    const dialogs: string[] = [];
    page.on("console", (m) => {
      if (m.type() === "error" || m.type() === "warn") errors.push(`console.${m.type()}: ${m.text()}`);
    });
    page.on("pageerror", (e) => errors.push(`page error: ${e instanceof Error ? e.message : String(e)}`));
    page.on("requestfailed", (r) => errors.push(`request failed: ${r.url()}`));
    page.on("request", (r) => requests.push(r.url()));
    page.on("dialog", (d) => {
      dialogs.push(d.message());
      void d.dismiss();
    });
    await page.setViewport({ width: 1200, height: 900 });
    const url = `file://${path.resolve(file)}`;
    await page.goto(url, { waitUntil: "load" });
    await page.waitForFunction("document.body.dataset.chartsRendered !== undefined", { timeout: 20_000 }).catch(() => undefined);
    const rendered = (await page.evaluate("document.body.dataset.chartsRendered")) as string | undefined;
    const canvases = (await page.evaluate(CANVAS_PROBE)) as PageCheck["canvases"];
    const text = (await page.evaluate("document.body.innerText")) as string;
    return { errors, requests: requests.filter((r) => r !== url), rendered, canvases, text, dialogs };
  } finally {
    await page.close();
  }
}

function assertChartsDrawn(check: PageCheck, expected: number, what: string): void {
  assert.deepEqual(check.errors, [], `${what}: console errors or warnings in Chromium`);
  assert.deepEqual(check.requests, [], `${what}: the report must not load anything`);
  assert.equal(check.rendered, String(expected), `${what}: charts-rendered marker`);
  assert.equal(check.canvases.length, expected, `${what}: canvases`);
  check.canvases.forEach((c, i) => {
    assert.ok(c.width > 100 && c.height > 100, `${what}: chart ${i} has size ${c.width}x${c.height}`);
    assert.ok(c.painted > 1000, `${what}: chart ${i} is blank (${c.painted} painted pixels)`);
    assert.ok(c.seriesColour > 50, `${what}: chart ${i} shows no data in the first series' colour (${c.seriesColour} pixels)`);
  });
}

function finiteNonNeg(x: unknown, what: string): void {
  assert.ok(typeof x === "number" && Number.isFinite(x) && x >= 0, `${what} = ${String(x)}`);
}

test("bench scaling: real runs on 1 and 2 workers, table, JSON and a report that renders in Chromium", async () => {
  const dir = tempDir("bench-scaling");
  const json = path.join(dir, "scaling.json");
  const html = path.join(dir, "report", "scaling.html");
  const r = await runLaunch(["bench", "scaling", TINY_CONFIG, "--workers", "1,2", "--steps", "4", "--warmup-steps", "2",
    "--set", `data.cache_dir=${TEST_CACHE_DIR}`, "--independent", "--json", json, "--html", html]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /weak scaling: fixed micro-batch of 2 sequences per worker/);
  assert.match(r.stdout, /medians of steps 3\.\.4/);
  assert.match(r.stdout, /^1\s+2\s+\d+\s+1\.000\s/m, "N=1 row: global batch 2, efficiency 1.000");
  assert.match(r.stdout, /^2\s+4\s+\d+\s+\d\.\d{3}\s/m, "N=2 row: global batch 4");
  assert.match(r.stdout, /^2\s+1\s+2(\s+-?\d+\.\d){7}$/m, `time split row of rank 1 at N=2 (2 sequences, then 7 times) in\n${r.stdout}`);

  const res = JSON.parse(fs.readFileSync(json, "utf8")) as ScalingResult;
  assert.equal(res.kind, "scaling");
  assert.equal(res.mode, "weak");
  assert.equal(res.micro_batch, 2);
  assert.deepEqual(res.timed_steps, [3, 4]);
  assert.deepEqual(res.runs.map((x) => [x.N, x.global_batch]), [[1, 2], [2, 4]]);
  assert.equal(res.runs[0].efficiency, 1);
  for (const run of res.runs) {
    assert.ok(run.tokens_per_s > 0 && run.mfu > 0 && run.step_ms > 0, JSON.stringify({ N: run.N, tps: run.tokens_per_s, mfu: run.mfu }));
    assert.ok(Math.abs(run.efficiency - run.tokens_per_s / (run.N * res.runs[0].tokens_per_s)) < 1e-12);
    assert.deepEqual(run.per_rank.map((p) => p.rank), Array.from({ length: run.N }, (_, i) => i));
    for (const p of run.per_rank) {
      for (const k of ["step_ms", "compute_ms", "communication_ms", "data_wait_ms", "other_ms", "idle_ms"] as const) finiteNonNeg(p[k], `N=${run.N} rank ${p.rank} ${k}`);
      // optimizer_ms is the worker's (update time minus its exposed communication); only checked to be a number here
      assert.ok(Number.isFinite(p.optimizer_ms), `N=${run.N} rank ${p.rank} optimizer_ms`);
      assert.ok(p.compute_ms > 0, `N=${run.N} rank ${p.rank} computed nothing`);
    }
    assert.deepEqual(run.steps.map((s) => s.step), [1, 2, 3, 4]);
    for (const s of run.steps) {
      assert.ok(Number.isFinite(s.loss) && s.loss > 0, `loss at step ${s.step}`);
      assert.equal(s.per_rank.length, run.N);
    }
  }
  assert.ok(res.runs[1].per_rank.every((p) => p.communication_ms > 0), "2 workers all-reduce");

  // --independent: 2 single-worker jobs at once, no ring; their summed throughput against 2 x the N=1 run's
  const ind = res.independent?.[0];
  assert.ok(ind !== undefined && res.independent?.length === 1, "one ceiling entry, for N = 2");
  assert.equal(ind.N, 2);
  assert.equal(ind.jobs_tokens_per_s.length, 2);
  assert.ok(ind.jobs_tokens_per_s.every((t) => t > 0));
  assert.ok(Math.abs(ind.tokens_per_s - ind.jobs_tokens_per_s[0] - ind.jobs_tokens_per_s[1]) < 1e-9);
  assert.ok(Math.abs(ind.efficiency - ind.tokens_per_s / (2 * res.runs[0].tokens_per_s)) < 1e-12);
  assert.match(r.stdout, /the machine's own limit/);
  assert.match(r.stdout, /^2\s+\d+\s+\d\.\d{3}\s+\d\.\d{3}\s+\d\.\d{3}\s+\d+$/m, `ceiling row in\n${r.stdout}`);

  assertChartsDrawn(await openReport(html), 5, "scaling report");
  fs.rmSync(dir, { recursive: true, force: true });
});

test("bench allreduce: a small real sweep, JSON and a report that renders in Chromium", async () => {
  const dir = tempDir("bench-allreduce");
  const json = path.join(dir, "allreduce.json");
  const html = path.join(dir, "allreduce.html");
  const r = await runLaunch(["bench", "allreduce", "--workers", "2", "--sizes", "4096,64KiB", "--iters", "3", "--warmup", "1", "--json", json, "--html", html]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /# loopback TCP limit: [\d.]+ GB\/s/);
  assert.match(r.stdout, /^\s+4 KiB\s+2\s+ringtrain-\S+\s+[\d.]+ ms\s+[\d.]+\s+[\d.]+/m);
  assert.match(r.stdout, /^\s+64 KiB\s+2\s+ringtrain-/m);
  const res = JSON.parse(fs.readFileSync(json, "utf8")) as AllreduceResult;
  assert.equal(res.kind, "allreduce");
  assert.equal(res.gloo_skipped, "not asked (--gloo)");
  assert.deepEqual(res.rows.map((x) => [x.N, x.bytes, x.iters]), [[2, 4096, 3], [2, 65536, 3]]);
  for (const row of res.rows) {
    assert.ok(row.seconds > 0 && row.algbwGBps > 0);
    assert.ok(Math.abs(row.busbwGBps - row.algbwGBps) < 1e-12, "busbw = algbw x 2(N-1)/N = algbw at N=2");
    assert.ok(Math.abs(row.algbwGBps - row.bytes / row.seconds / 1e9) < 1e-9);
  }
  assert.ok(res.tcp.GBps > 0);
  assertChartsDrawn(await openReport(html), 2, "allreduce report");
  fs.rmSync(dir, { recursive: true, force: true });
});

test("bench allreduce --tls: the rings run over mutual TLS (a mismatched CA makes the run fail naming TLS)", async (t) => {
  const missing = opensslUnavailable();
  if (missing !== undefined) return t.skip(missing);
  const dir = tempDir("bench-allreduce-tls");
  const job = makePki(dir, "job");
  const other = makePki(dir, "other");
  const ok = await runLaunch(["bench", "allreduce", "--workers", "2", "--sizes", "64KiB", "--iters", "2", "--warmup", "1", "--tls", `${job.ca},${job.cert},${job.key}`]);
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(ok.stdout, /^\s+64 KiB\s+2\s+ringtrain-http2-socket/m);
  // our certificate is signed by a CA we are told not to trust: every handshake fails, so TLS really is in use
  const bad = await runLaunch(["bench", "allreduce", "--workers", "2", "--sizes", "64KiB", "--iters", "2", "--warmup", "1", "--tls", `${other.ca},${job.cert},${job.key}`]);
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /TLS: /);
  fs.rmSync(dir, { recursive: true, force: true });
});

test("bench step: a small real step benchmark, JSON and a report that renders in Chromium", async () => {
  const dir = tempDir("bench-step");
  const json = path.join(dir, "step.json");
  const html = path.join(dir, "step.html");
  const r = await runLaunch(["bench", "step", "--steps", "2", "--warmup", "1", "--batch", "4", "--seq", "32", "--vocab", "1000", "--backend", "wasm", "--rounds", "2", "--json", json, "--html", html]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^tfjs-wasm\s+\d+\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+[\d.]+%$/m);
  const res = JSON.parse(fs.readFileSync(json, "utf8")) as StepResult;
  assert.equal(res.kind, "step");
  assert.equal(res.tokens_per_step, 128);
  assert.deepEqual(res.shape, { vocab: 1000, hidden: 128, layers: 2, heads: 2, ffn: 512, seq: 32, batch: 4 });
  assert.equal(res.tfjs.step_ms?.length, 4, "2 rounds of 2 timed steps");
  assert.equal(res.rounds.length, 2);
  res.rounds.forEach((x, i) => {
    const mine = (res.tfjs.step_ms ?? []).slice(2 * i, 2 * i + 2);
    assert.equal(x.tfjs_step_ms, (mine[0] + mine[1]) / 2, `round ${i + 1} median`);
    assert.equal(x.ratio, undefined);
  });
  assert.match(r.stdout, /2 alternating rounds/);
  assert.ok(res.tfjs.tokens_per_s > 0 && res.tfjs.mfu > 0 && res.tfjs.peak_gflops > 0, `mfu ${res.tfjs.mfu}`);
  assert.ok(Math.abs(res.tfjs.mfu - (res.step_gflop / (res.tfjs.step_ms_median / 1000)) / res.tfjs.peak_gflops) < 1e-9, "MFU = achieved / peak");
  assert.ok(Math.abs(res.tfjs.tokens_per_s - 128 / (res.tfjs.step_ms_median / 1000)) < 1e-6);
  assert.equal(res.torch, undefined);
  assertChartsDrawn(await openReport(html), 3, "step report");
  fs.rmSync(dir, { recursive: true, force: true });
});

test("bench: bad arguments exit with code 2 and say what is wrong", async () => {
  const dir = tempDir("bench-bad");
  const cases: [string[], RegExp][] = [
    [["bench", "scaling", TINY_CONFIG, "--workers", "0"], /--workers: '0' is not an integer >= 1/],
    [["bench", "scaling", path.join(dir, "missing.yaml"), "--workers", "1"], /missing\.yaml: cannot read config file \(ENOENT\)/],
    [["bench", "scaling", TINY_CONFIG, "--steps", "2", "--warmup-steps", "2"], /--steps 2 must exceed --warmup-steps 2/],
    [["bench", "scaling", TINY_CONFIG, "--set", "model.no_such_field=1"], /no_such_field/],
    [["bench", "scaling", TINY_CONFIG, "--workers", "2", "--independent"], /--independent needs N = 1 in --workers/],
    [["bench", "allreduce", "--workers", "1"], /--workers: '1' is not an integer >= 2/],
    [["bench", "allreduce", "--sizes", "3"], /--sizes: 3 must be a positive multiple of 4 bytes/],
    [["bench", "allreduce", "--transport", "carrier-pigeon"], /--transport: 'carrier-pigeon' is not one of grpc, http2/],
    [["bench", "allreduce", "--tls", "ca.pem,node.pem"], /--tls: expected CA,CERT,KEY \(three PEM files\), got "ca\.pem,node\.pem"/],
    [["bench", "allreduce", "--tls", `${path.join(dir, "no-ca.pem")},b,c`], /--tls: .*no-ca\.pem not found/],
    [["bench", "nonsense"], /Unknown argument: nonsense/],
  ];
  // each fails before starting anything, so they run side by side
  const results = await Promise.all(cases.map(([args]) => runLaunch(args)));
  cases.forEach(([args, message], i) => {
    const r = results[i];
    assert.equal(r.code, EXIT_CONFIG, `launch ${args.join(" ")}: exit ${r.code}\n${r.stderr}`);
    assert.match(r.stderr, message, `launch ${args.join(" ")}`);
  });
  assert.equal(fs.readdirSync(dir).length, 0, "nothing written");
  fs.rmSync(dir, { recursive: true, force: true });
});

test("report: data and text from the results stay text (no script injection), and the page still renders", async () => {
  const hostile = "</script><script>alert('x')</script><img src=x onerror=alert(1)> & \u2028";
  const report: Report = {
    title: `t ${hostile}`,
    notes: [hostile],
    sections: [{
      heading: hostile,
      notes: [hostile],
      tables: [{ columns: [hostile, "n"], rows: [[hostile, 1.5]] }],
      charts: [{ title: hostile, config: { type: "bar", data: { labels: [hostile, "b"], datasets: [{ label: hostile, data: [3, 4], backgroundColor: "#0072B2" }] } } }],
    }],
  };
  const dir = tempDir("bench-report");
  const file = path.join(dir, "hostile.html");
  fs.writeFileSync(file, renderHtmlReport(report));
  const check = await openReport(file);
  fs.rmSync(dir, { recursive: true, force: true });
  assert.deepEqual(check.dialogs, [], "no script from the data ran");
  assertChartsDrawn(check, 1, "hostile report");
  assert.ok(check.text.includes("</script><script>alert('x')</script>"), "the hostile string is shown as text");
});
