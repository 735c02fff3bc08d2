/**
 * `launch bench allreduce`: ringtrain's ring all-reduce (per transport) in the nccl-tests style, beside the raw
 * loopback TCP limit and, with --gloo, PyTorch Gloo's all_reduce measured in the same run. Definitions as in
 * nccl-tests: algbw = S / t, busbw = algbw * 2(N-1)/N; our time per size is the median over iterations of the
 * slowest rank's time. Every rank is its own process (allreduce-rank.ts) on this machine, over loopback.
 */
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import * as readline from "node:readline";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import type { ArgumentsCamelCase, Argv, CommandModule } from "yargs";
import { repoRoot } from "../../shared/paths";
import { ConfigError } from "../../shared/config/load";
import { EXIT_OK, EXIT_WORKER_FAILURE } from "../../shared/exit-codes";
import { DEFAULT_CHUNK_BYTES, DEFAULT_TRANSPORT, RING_TRANSPORT_KINDS, type RingTransportKind } from "../../worker/collective/ring-communicator";
import { workerMallocEnv } from "../../worker/transport/malloc-env";
import type { RankCommand, RankTiming } from "./allreduce-rank";
import { checkInt, checkWritable, fmtBytes, median, parseIntList, parseSize, parseSizeList, writeJsonFile } from "./common";
import { colour, countCharts, writeHtmlReport, type Report, type ReportChart } from "./report";
import type { TlsFiles } from "../../shared/security/tls";
import { childNodeFlags } from "../child-node-flags";

/** Untimed all-reduces per size before the timed ones, as nccl-tests' default (-w 5). */
export const DEFAULT_WARMUP = 5;

/** One measured (size, N, implementation). */
export interface AllreduceRow {
  N: number;
  bytes: number;
  seconds: number;
  algbwGBps: number;
  busbwGBps: number;
  /** `ringtrain-<transport>` or `torch-gloo`. */
  impl: string;
  iters: number;
  /** CPU seconds per iteration, averaged over ranks (user + system of the rank processes). */
  cpuSec?: number;
  /** The user-space part of cpuSec (ringtrain only; the Gloo script reports totals). */
  userCpuSec?: number;
  /** A remark (e.g. Gloo's result error when it was not exact). */
  note?: string;
  /** How ringtrain's ranks reached their neighbours: "unix" (same-host Unix sockets), "tcp", or "mixed". */
  link?: "unix" | "tcp" | "mixed";
}

/** Median ratios of one ringtrain transport to Gloo at sizes >= 4 MiB. */
export interface AllreduceSummary {
  impl: string;
  N: number;
  busbw_ratio_median: number;
  busbw_ratio_min: number;
  cpu_ratio_median?: number;
}

/** What `runAllreduceBench` measures. */
export interface AllreduceOptions {
  /** World sizes (ranks per ring). */
  ranks: number[];
  /** Message sizes in bytes (multiples of 4). */
  sizes: number[];
  /** Timed iterations per size; default: 5..50, fewer for large sizes (1 GiB moved per size at most). */
  iters?: number;
  /** Untimed all-reduces before the timed ones (the first is checked for correctness). */
  warmup: number;
  transports: RingTransportKind[];
  chunkBytes: number;
  compression: "none" | "fp16" | "bf16";
  /** Max bytes in flight per peer stream (0: the communicator's default). */
  inflightBytes: number;
  send: "zero-copy" | "copy";
  largeFrames: boolean;
  /** Run PyTorch Gloo beside ours (if /usr/bin/python3 can import torch). */
  gloo: boolean;
  /** The Gloo peer script (default ../shared/peers/gloo_allreduce.py beside the repository). */
  glooScript?: string;
  /** Extra node flags for the rank processes (e.g. --cpu-prof). */
  nodeArgs?: string[];
  /** Mutual TLS on every ring (PEM files as communication.tls); plaintext when absent. */
  tls?: TlsFiles;
  /** Neighbours connect over Unix sockets rather than loopback TCP (communication.unix_sockets; default true). */
  unixSockets?: boolean;
  /** Called for every row as soon as it is measured; `extra` has the ratio to Gloo on Gloo rows. */
  onRow?: (row: AllreduceRow, extra: string) => void;
  /** Called once the loopback limit is known, before the first row. */
  onStart?: (tcp: TcpLimit, glooSkipped: string | undefined) => void;
}

/** The loopback TCP bandwidth limit and how it was measured. */
export interface TcpLimit {
  GBps: number;
  how: string;
}

/** Everything `launch bench allreduce` measured (what --json writes). */
export interface AllreduceResult {
  kind: "allreduce";
  date: string;
  cpu_cores: number;
  cpu_model: string;
  tcp: TcpLimit;
  ranks: number[];
  sizes: number[];
  transports: RingTransportKind[];
  chunk_bytes: number;
  compression: string;
  warmup: number;
  /** Whether ringtrain's neighbours were allowed Unix sockets (each row's `link` says what they used). */
  unix_sockets: boolean;
  /** Why Gloo was not measured (not asked, or torch missing); absent when it was. */
  gloo_skipped?: string;
  rows: AllreduceRow[];
  summary: AllreduceSummary[];
}

/** The Gloo peer script's default place: shared/peers/ beside the repository (not needed by the product). */
export function defaultGlooScript(): string {
  return path.join(repoRoot(), "..", "shared", "peers", "gloo_allreduce.py");
}

/** Why Gloo cannot run here (script or torch missing), or undefined when it can. */
export function glooUnavailable(script: string): string | undefined {
  if (!fs.existsSync(script)) return `${script} not found`;
  if (spawnSync("/usr/bin/python3", ["-c", "import torch"]).status !== 0) return "/usr/bin/python3 cannot import torch (apt-get install -y python3-torch libopenblas0-pthread)";
  return undefined;
}

/** A rank process of the benchmark failed (exited, or could not start its ring); the message names it. */
export class RankFailedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "RankFailedError";
  }
}

class Ring {
  private lines: string[][] = [];
  private waiters: (() => void)[] = [];
  private exited: string | undefined;
  /** How the ranks reached their neighbours, once connected. */
  link: "unix" | "tcp" | "mixed" = "tcp";
  constructor(readonly procs: ChildProcess[]) {
    procs.forEach((p, i) => {
      this.lines[i] = [];
      readline.createInterface({ input: p.stdout! }).on("line", (l) => {
        if (!l.startsWith("{")) {
          process.stderr.write(`[rank ${i}] ${l}\n`); // e.g. --trace-gc output: not a protocol line
          return;
        }
        this.lines[i].push(l);
        this.waiters.splice(0).forEach((w) => w());
      });
      p.stderr!.on("data", (d: Buffer) => process.stderr.write(`[rank ${i}] ${d}`));
      p.on("exit", (code, signal) => {
        if (code !== 0) this.exited ??= `rank ${i} exited with ${code ?? signal}`;
        this.waiters.splice(0).forEach((w) => w());
      });
    });
  }
  async next<T>(): Promise<T[]> {
    while (this.lines.some((l) => l.length === 0)) {
      if (this.exited !== undefined) throw new RankFailedError(`all-reduce benchmark: ${this.exited} (its output is above)`);
      await new Promise<void>((r) => this.waiters.push(r));
    }
    return this.lines.map((l) => JSON.parse(l.shift()!) as T);
  }
  send(cmd: RankCommand): void {
    for (const p of this.procs) p.stdin!.write(JSON.stringify(cmd) + "\n");
  }
  kill(): void {
    for (const p of this.procs) if (p.exitCode === null) p.kill("SIGKILL");
  }
}

async function startRing(N: number, o: AllreduceOptions, transport: RingTransportKind): Promise<Ring> {
  const script = path.join(__dirname, "allreduce-rank.js");
  const procs = Array.from({ length: N }, (_, r) => spawn(process.execPath, [...childNodeFlags(), ...(o.nodeArgs ?? []), script, String(r), String(N), String(o.chunkBytes), o.compression,
    String(o.inflightBytes), o.send, o.largeFrames ? "large-frames" : "default-frames", transport, o.tls === undefined ? "-" : JSON.stringify(o.tls),
    o.unixSockets === false ? "tcp" : "unix"],
  { stdio: ["pipe", "pipe", "pipe"], env: { ...process.env, ...workerMallocEnv() } }));
  const ring = new Ring(procs);
  try {
    const addrs = await ring.next<{ address: string }>();
    ring.send({ addresses: addrs.map((a) => a.address) });
    const vias = (await ring.next<{ via?: string | null }>()).map((c) => c.via ?? "tcp");
    ring.link = vias.every((v) => v === "unix") ? "unix" : vias.every((v) => v === "tcp") ? "tcp" : "mixed";
  } catch (err) {
    ring.kill();
    throw err;
  }
  return ring;
}

function runGloo(script: string, N: number, bytes: number, iters: number, warmup: number): { seconds: number; cpuSec?: number; note?: string } | null {
  const r = spawnSync("/usr/bin/python3", [script, String(N), String(Math.floor(bytes / 4)), String(iters), String(warmup)],
    { encoding: "utf8", timeout: 600_000, env: { ...process.env, OMP_NUM_THREADS: "1" } });
  const line = (r.stdout ?? "").trim().split("\n").pop() ?? "";
  try {
    const o = JSON.parse(line) as { secPerIter: number; maxAbsErr: number; cpuSecPerIterPerRank?: number[] };
    const cpus = o.cpuSecPerIterPerRank ?? [];
    return { seconds: o.secPerIter, cpuSec: cpus.length ? cpus.reduce((a, b) => a + b, 0) / cpus.length : undefined, note: o.maxAbsErr !== 0 ? `gloo maxAbsErr ${o.maxAbsErr}` : undefined };
  } catch {
    process.stderr.write(`gloo run failed (N=${N}, bytes=${bytes}): ${r.stderr?.slice(-500)}\n`);
    return null;
  }
}

/** The loopback TCP limit: iperf3 when installed, else a node socket pushing 1 GiB to a loopback sink. */
export async function tcpLimit(): Promise<TcpLimit> {
  const ip = spawnSync("iperf3", ["--version"], { encoding: "utf8" });
  if (ip.status === 0) {
    const port = 20000 + (process.pid % 20000);
    const srv = spawn("iperf3", ["-s", "-1", "-B", "127.0.0.1", "-p", String(port)], { stdio: "ignore" });
    await new Promise((r) => setTimeout(r, 500));
    const c = spawnSync("iperf3", ["-c", "127.0.0.1", "-p", String(port), "-t", "3", "-J"], { encoding: "utf8" });
    srv.kill();
    try {
      const o = JSON.parse(c.stdout) as { end: { sum_received: { bits_per_second: number } } };
      return { GBps: o.end.sum_received.bits_per_second / 8 / 1e9, how: "iperf3 -t 3, one stream" };
    } catch {
      /* fall through to the node socket push */
    }
  }
  const total = 1024 * 1024 * 1024;
  const server = net.createServer((s) => s.on("data", () => undefined));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as net.AddressInfo).port;
  const sock = net.connect(port, "127.0.0.1");
  await new Promise((r) => sock.once("connect", r));
  const block = Buffer.alloc(4 * 1024 * 1024, 1);
  const t0 = process.hrtime.bigint();
  for (let sent = 0; sent < total; sent += block.length) if (!sock.write(block)) await new Promise((r) => sock.once("drain", r));
  await new Promise<void>((r) => sock.end(r));
  const sec = Number(process.hrtime.bigint() - t0) / 1e9;
  server.close();
  return { GBps: total / sec / 1e9, how: "node socket push, same process" };
}

/** Sizes from `min` to `max` bytes, times 4 each step (the default sweep). */
export function sizeSweep(minBytes: number, maxBytes: number): number[] {
  const sizes: number[] = [];
  for (let s = minBytes; s <= maxBytes; s *= 4) sizes.push(s);
  return sizes;
}

/** Runs the sweep: every N, every size, every transport (and Gloo when asked and available). */
export async function runAllreduceBench(o: AllreduceOptions): Promise<AllreduceResult> {
  if (o.ranks.length === 0 || o.sizes.length === 0) throw new ConfigError("all-reduce benchmark: name at least one world size and one message size");
  for (const n of o.ranks) if (!Number.isInteger(n) || n < 2) throw new ConfigError(`--workers: ${n} is not an integer >= 2 (an all-reduce needs two ranks)`);
  for (const t of o.transports) if (!RING_TRANSPORT_KINDS.includes(t)) throw new ConfigError(`--transport: '${String(t)}' is not one of ${RING_TRANSPORT_KINDS.join(", ")}`);
  // every rank holds the whole message (plus its receive chunks): N x S must fit in this machine's memory
  const biggest = Math.max(...o.sizes);
  const widest = Math.max(...o.ranks);
  if (widest * biggest > os.totalmem()) {
    throw new ConfigError(`--sizes: ${fmtBytes(biggest)} on ${widest} ranks needs at least ${widest} x ${fmtBytes(biggest)} of memory (each rank holds the whole message); `
      + `this machine has ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB`);
  }
  const glooScript = o.glooScript ?? defaultGlooScript();
  const glooSkipped = o.gloo ? glooUnavailable(glooScript) : "not asked (--gloo)";
  const gloo = glooSkipped === undefined;
  const itersFor = (b: number): number => o.iters ?? Math.max(5, Math.min(50, Math.floor((1 << 30) / b)));
  const tcp = await tcpLimit();
  o.onStart?.(tcp, glooSkipped);
  const rows: AllreduceRow[] = [];
  const emit = (row: AllreduceRow, extra = ""): void => {
    rows.push(row);
    o.onRow?.(row, extra);
  };
  const impls = o.transports.map((t) => `ringtrain-${t}`);
  for (const N of o.ranks) {
    // all rings of this N stay up (idle when not measured) so every size is measured side by side
    const rings: Ring[] = [];
    try {
      for (const t of o.transports) rings.push(await startRing(N, o, t));
      for (const bytes of o.sizes) {
        const iters = itersFor(bytes);
        const ours: AllreduceRow[] = [];
        for (let k = 0; k < rings.length; k++) {
          const ring = rings[k];
          ring.send({ bytes, iters, warmup: o.warmup });
          const res = await ring.next<RankTiming>();
          if (res.some((r) => r.bad > 0)) throw new RankFailedError(`wrong all-reduce result at N=${N}, ${bytes} bytes (${impls[k]})`);
          const perIter = res[0].times.map((_, j) => Math.max(...res.map((r) => r.times[j])));
          const sec = median(perIter);
          const alg = bytes / sec / 1e9;
          const row: AllreduceRow = { N, bytes, seconds: sec, algbwGBps: alg, busbwGBps: (alg * 2 * (N - 1)) / N, impl: impls[k], iters,
            cpuSec: res.reduce((a, r) => a + r.cpuSec, 0) / res.length, userCpuSec: res.reduce((a, r) => a + r.userSec, 0) / res.length, link: ring.link };
          ours.push(row);
          emit(row);
        }
        if (gloo) {
          const g = runGloo(glooScript, N, bytes, iters, o.warmup);
          if (g) {
            const galg = bytes / g.seconds / 1e9;
            const grow: AllreduceRow = { N, bytes, seconds: g.seconds, algbwGBps: galg, busbwGBps: (galg * 2 * (N - 1)) / N, impl: "torch-gloo", iters, cpuSec: g.cpuSec,
              ...(g.note ? { note: g.note } : {}) };
            emit(grow, ours.map((r) => `ratio ${r.impl.slice(10)} ${(r.busbwGBps / grow.busbwGBps).toFixed(2)}`).join(" ") + (g.note ? " " + g.note : ""));
          }
        }
      }
      for (const ring of rings) {
        ring.send({ quit: true });
        await Promise.all(ring.procs.map((p) => (p.exitCode !== null ? undefined : new Promise((r) => p.on("exit", r)))));
      }
    } finally {
      for (const ring of rings) ring.kill();
    }
  }
  const summary: AllreduceSummary[] = [];
  if (gloo) {
    const big = rows.filter((r) => r.bytes >= 4 << 20);
    for (const impl of impls) {
      for (const N of o.ranks) {
        const pairs = big.filter((r) => r.N === N && r.impl === impl).map((r) => {
          const g = big.find((x) => x.N === N && x.bytes === r.bytes && x.impl === "torch-gloo");
          return g ? { bw: r.busbwGBps / g.busbwGBps, cpu: r.cpuSec !== undefined && g.cpuSec !== undefined ? r.cpuSec / g.cpuSec : NaN } : null;
        }).filter((x): x is { bw: number; cpu: number } => x !== null);
        if (pairs.length === 0) continue;
        const bw = pairs.map((p) => p.bw);
        const cpu = pairs.map((p) => p.cpu).filter((x) => !Number.isNaN(x));
        summary.push({ impl, N, busbw_ratio_median: median(bw), busbw_ratio_min: Math.min(...bw), ...(cpu.length ? { cpu_ratio_median: median(cpu) } : {}) });
      }
    }
  }
  const cpus = os.cpus();
  return {
    kind: "allreduce", date: new Date().toISOString(), cpu_cores: cpus.length, cpu_model: cpus[0]?.model ?? "unknown", tcp, ranks: o.ranks, sizes: o.sizes,
    transports: o.transports, chunk_bytes: o.chunkBytes, compression: o.compression, warmup: o.warmup, unix_sockets: o.unixSockets !== false, ...(gloo ? {} : { gloo_skipped: glooSkipped }), rows, summary,
  };
}

/** Width of the table's impl column: the longest implementation name (`ringtrain-http2-socket`). */
const IMPL_WIDTH = Math.max("torch-gloo".length, ...RING_TRANSPORT_KINDS.map((t) => `ringtrain-${t}`.length));

/** The table header of the all-reduce benchmark (two lines: the loopback limit and the column names). */
export function allreduceHeader(tcp: TcpLimit, o: Pick<AllreduceOptions, "chunkBytes" | "compression" | "warmup" | "unixSockets">): string {
  const link = o.unixSockets === false ? "loopback TCP" : "Unix sockets where the transport supports them (http2-socket without TLS), else TCP";
  return `# loopback TCP limit: ${tcp.GBps.toFixed(2)} GB/s (${tcp.how}); chunkBytes=${o.chunkBytes} compression=${o.compression} warmup=${o.warmup}; ringtrain peers: ${link}; Gloo: TCP\n`
    + `${"size".padStart(10)} ${"N".padStart(3)}  ${"impl".padEnd(IMPL_WIDTH)} ${"time".padStart(13)} ${"algbw".padStart(8)} ${"busbw".padStart(8)}  (GB/s; ratio = ringtrain busbw / gloo busbw)\n`;
}

/** One table line of the all-reduce benchmark. */
export function allreduceLine(row: AllreduceRow, extra = ""): string {
  const user = row.userCpuSec === undefined ? "" : ` (user ${(row.userCpuSec * 1e3).toFixed(2)})`;
  const cpu = row.cpuSec === undefined ? "" : `cpu ${(row.cpuSec * 1e3).toFixed(2)} ms/rank${user} `;
  const link = row.link === undefined ? "" : `via ${row.link} `;
  return `${fmtBytes(row.bytes).padStart(10)} ${String(row.N).padStart(3)}  ${row.impl.padEnd(IMPL_WIDTH)} ${(row.seconds * 1e3).toFixed(3).padStart(10)} ms ${row.algbwGBps.toFixed(3).padStart(8)} ${row.busbwGBps.toFixed(3).padStart(8)}  ${cpu}${link}${extra}`.trimEnd() + "\n";
}

/** The summary lines (ratios to Gloo at >= 4 MiB), empty when Gloo was not measured. */
export function allreduceSummaryLines(res: AllreduceResult): string {
  return res.summary.map((s) => `# ${s.impl} N=${s.N}: busbw ratio vs gloo at >= 4 MiB: median ${s.busbw_ratio_median.toFixed(2)}, min ${s.busbw_ratio_min.toFixed(2)}`
    + (s.cpu_ratio_median !== undefined ? `; cpu per iteration vs gloo: median ${s.cpu_ratio_median.toFixed(2)}x` : "") + "\n").join("");
}

/** The HTML report of an all-reduce result: bus bandwidth vs message size, one line per implementation and N. */
export function allreduceReport(res: AllreduceResult, command: string): Report {
  const series = [...new Set(res.rows.map((r) => `${r.impl} N=${r.N}`))];
  const line = (metric: "busbwGBps" | "algbwGBps", title: string): ReportChart => ({
    title,
    config: {
      type: "line",
      data: {
        datasets: series.map((name, i) => ({
          label: name,
          data: res.rows.filter((r) => `${r.impl} N=${r.N}` === name).map((r) => ({ x: r.bytes, y: r[metric] })),
          borderColor: colour(i), backgroundColor: colour(i, 0.3), borderDash: name.startsWith("torch-gloo") ? [6, 4] : [],
        })),
      },
      options: {
        scales: {
          x: { type: "logarithmic", title: { display: true, text: "message size (bytes, log scale)" } },
          y: { beginAtZero: true, title: { display: true, text: "GB/s" } },
        },
      },
    },
  });
  return {
    title: "ringtrain all-reduce benchmark (nccl-tests style)",
    notes: [
      command,
      `${res.date}; ${res.cpu_cores} CPU cores (${res.cpu_model}); one process per rank on loopback`,
      `loopback TCP limit: ${res.tcp.GBps.toFixed(2)} GB/s (${res.tcp.how}); chunk ${fmtBytes(res.chunk_bytes)}, compression ${res.compression}`,
      res.gloo_skipped ? `PyTorch Gloo not measured: ${res.gloo_skipped}` : "PyTorch Gloo measured in the same run (torch.distributed all_reduce, gloo backend).",
    ],
    sections: [
      {
        heading: "Bus bandwidth",
        notes: ["algbw = size / time; busbw = algbw x 2(N-1)/N (nccl-tests); time = median over iterations of the slowest rank"],
        charts: [line("busbwGBps", "busbw vs message size"), line("algbwGBps", "algbw vs message size")],
      },
      {
        heading: "Measurements",
        tables: [
          {
            columns: ["size", "N", "impl", "time ms", "algbw GB/s", "busbw GB/s", "cpu ms/rank", "iters"],
            rows: res.rows.map((r) => [fmtBytes(r.bytes), r.N, r.impl, r.seconds * 1e3, r.algbwGBps, r.busbwGBps, r.cpuSec === undefined ? null : r.cpuSec * 1e3, r.iters]),
          },
          ...(res.summary.length > 0 ? [{
            columns: ["impl", "N", "busbw / gloo (median, >= 4 MiB)", "min", "cpu / gloo (median)"],
            rows: res.summary.map((s) => [s.impl, s.N, s.busbw_ratio_median, s.busbw_ratio_min, s.cpu_ratio_median ?? null]),
          }] : []),
        ],
      },
    ],
  };
}

/** Arguments of `launch bench allreduce`. */
interface AllreduceArgs {
  workers: string;
  sizes?: string;
  "min-bytes": string;
  "max-bytes": string;
  iters?: number;
  warmup: number;
  transport?: string;
  "chunk-bytes": number;
  compression: string;
  gloo: boolean;
  tls?: string;
  "unix-sockets": boolean;
  json?: string;
  html?: string;
}

/**
 * "--tls CA,CERT,KEY" as communication.tls's three PEM files; each must be readable (a ConfigError names the one
 * that is not).
 */
export function tlsFilesOf(text: string): TlsFiles {
  const parts = text.split(",").map((p) => p.trim());
  if (parts.length !== 3 || parts.some((p) => p.length === 0)) throw new ConfigError(`--tls: expected CA,CERT,KEY (three PEM files), got "${text}"`);
  for (const f of parts) if (!fs.existsSync(f)) throw new ConfigError(`--tls: ${f} not found`);
  const [ca_file, cert_file, key_file] = parts;
  return { ca_file, cert_file, key_file };
}

/** The `launch bench allreduce` subcommand. */
export function allreduceCommand(setCode: (code: number) => void): CommandModule<object, AllreduceArgs> {
  return {
    command: "allreduce",
    describe: "nccl-tests-style all-reduce table (algbw, busbw per size and N), optionally beside PyTorch Gloo",
    builder: (y: Argv<object>): Argv<AllreduceArgs> =>
      y
        .option("workers", { type: "string", default: "2,4", describe: "ranks per ring, comma-separated (one process each)" })
        .option("sizes", { type: "string", describe: "message sizes, comma-separated: 4096,1MiB,64MiB (default: --min-bytes to --max-bytes, x4 each)" })
        .option("min-bytes", { type: "string", default: "1KiB", describe: "smallest size of the default sweep (4096, 64KiB, ...)" })
        .option("max-bytes", { type: "string", default: "256MiB", describe: "largest size of the default sweep" })
        .option("iters", { type: "number", describe: "timed iterations per size (default 5..50 by size)" })
        .option("warmup", { type: "number", default: DEFAULT_WARMUP, describe: "untimed all-reduces per size (V8 compiles the hot path during the first few)" })
        .option("transport", { type: "string", describe: `ring transports, comma-separated: http2,http2-raw,http2-socket,grpc (default ${DEFAULT_TRANSPORT})` })
        .option("chunk-bytes", { type: "number", default: DEFAULT_CHUNK_BYTES })
        .option("compression", { type: "string", default: "none", choices: ["none", "fp16", "bf16"] })
        .option("gloo", { type: "boolean", default: false, describe: "also measure PyTorch Gloo (needs /usr/bin/python3 with torch)" })
        .option("tls", { type: "string", describe: "mutual TLS on the rings: CA,CERT,KEY (PEM files, as communication.tls)" })
        .option("unix-sockets", { type: "boolean", default: true, describe: "neighbours on this machine connect over Unix sockets (communication.unix_sockets); --no-unix-sockets: loopback TCP, as Gloo" })
        .option("json", { type: "string", describe: "write all results to FILE" })
        .option("html", { type: "string", describe: "write a self-contained HTML report with charts to FILE" }) as unknown as Argv<AllreduceArgs>,
    handler: async (a: ArgumentsCamelCase<AllreduceArgs>): Promise<void> => {
      const ranks = parseIntList(a.workers, "workers", 2);
      const sizes = a.sizes !== undefined ? parseSizeList(a.sizes, "sizes") : sizeSweep(parseSize(a["min-bytes"], "min-bytes"), parseSize(a["max-bytes"], "max-bytes"));
      if (sizes.length === 0) throw new ConfigError(`--min-bytes ${a["min-bytes"]} exceeds --max-bytes ${a["max-bytes"]}`);
      if (a.iters !== undefined) checkInt(a.iters, "iters", 1);
      checkInt(a.warmup, "warmup", 1);
      checkInt(a["chunk-bytes"], "chunk-bytes", 4);
      checkWritable(a.json, "json");
      checkWritable(a.html, "html");
      const transports = (a.transport ?? DEFAULT_TRANSPORT).split(",").map((t) => t.trim()) as RingTransportKind[];
      const opts: AllreduceOptions = {
        ranks, sizes, iters: a.iters, warmup: a.warmup, transports, chunkBytes: a["chunk-bytes"], compression: a.compression as AllreduceOptions["compression"],
        inflightBytes: 0, send: "zero-copy", largeFrames: false, gloo: a.gloo, unixSockets: a["unix-sockets"],
        ...(a.tls !== undefined ? { tls: tlsFilesOf(a.tls) } : {}),
        onStart: (tcp, skipped) => {
          if (a.gloo && skipped) process.stderr.write(`Gloo skipped: ${skipped}\n`);
          process.stdout.write(allreduceHeader(tcp, opts));
        },
        onRow: (row, extra) => process.stdout.write(allreduceLine(row, extra)),
      };
      let res: AllreduceResult;
      try {
        res = await runAllreduceBench(opts);
      } catch (err) {
        if (err instanceof RankFailedError) {
          process.stderr.write(`launch bench allreduce: ${err.message}\n`);
          setCode(EXIT_WORKER_FAILURE);
          return;
        }
        throw err;
      }
      process.stdout.write(allreduceSummaryLines(res));
      if (a.json !== undefined) {
        writeJsonFile(a.json, res);
        process.stdout.write(`results: ${a.json}\n`);
      }
      if (a.html !== undefined) {
        const report = allreduceReport(res, `launch ${process.argv.slice(2).join(" ")}`);
        writeHtmlReport(a.html, report);
        process.stdout.write(`report (${countCharts(report)} charts): ${a.html}\n`);
      }
      setCode(EXIT_OK);
    },
  };
}
