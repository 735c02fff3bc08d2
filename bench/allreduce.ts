/**
 * All-reduce benchmark (npm run bench:allreduce): ringtrain's ring (per transport) vs the raw loopback TCP limit and
 * PyTorch Gloo's all_reduce, measured in the same run. nccl-tests definitions: algbw = S / t,
 * busbw = algbw * 2(N-1)/N. Our time per size is the median over iterations of the slowest rank's time.
 *
 * Flags: --sizes 4096,4194304  --max-bytes N  --min-bytes N  --iters N  --warmup N  --ranks 2,4
 *        --chunk-bytes N  --inflight-bytes N  --send zero-copy|copy  --compression none|fp16|bf16  --large-frames
 *        --transport http2,grpc (one ring per transport, measured side by side with one Gloo run per size;
 *        default: the communicator's default transport)
 *        --no-gloo  --gloo-script PATH  --json  --cpu-prof DIR (V8 CPU profile of every rank process)
 *        --node-args "--trace-gc ..." (extra node flags for the rank processes)
 * Internal: --worker RANK N CHUNK COMPRESSION INFLIGHT SEND FRAMES TRANSPORT (one rank process, driven over stdin/stdout).
 */
import * as fs from "node:fs";
import * as net from "node:net";
import * as path from "node:path";
import * as readline from "node:readline";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { repoRoot } from "../shared/paths";
import { RingCommunicator, DEFAULT_CHUNK_BYTES, DEFAULT_TRANSPORT, type RingTransportKind } from "../worker/collective/ring-communicator";
import { workerMallocEnv } from "../worker/transport/malloc-env";
import { GrpcPeerTransport } from "../worker/transport/grpc-peer-transport";

interface Row {
  N: number;
  bytes: number;
  seconds: number;
  algbwGBps: number;
  busbwGBps: number;
  impl: string;
  /** CPU seconds per iteration, averaged over ranks (user + system of the rank processes). */
  cpuSec?: number;
}

function flag(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

// ---- worker mode ---------------------------------------------------------------------------------------

async function worker(): Promise<void> {
  const i = process.argv.indexOf("--worker");
  const [rank, N, chunkBytes] = process.argv.slice(i + 1, i + 4).map(Number);
  const compression = process.argv[i + 4] as "none" | "fp16" | "bf16";
  const inflight = Number(process.argv[i + 5]) || undefined;
  const zeroCopySend = process.argv[i + 6] !== "copy";
  const transport = process.argv[i + 8] as RingTransportKind;
  const opts = { jobId: "bench", token: "bench-token", rank, worldSize: N, timeoutMs: 120_000, chunkBytes, compression, maxInflightBytes: inflight, zeroCopySend, transport };
  // --large-frames: the gRPC transport with 16 MiB HTTP/2 DATA frames on the inbound connection
  const comm = process.argv[i + 7] === "large-frames"
    ? RingCommunicator.withTransport(opts, await GrpcPeerTransport.listen({ ...opts, chunkBytes, largeFrames: true }))
    : await RingCommunicator.listen(opts);
  process.stdout.write(JSON.stringify({ address: comm.address }) + "\n");
  const rl = readline.createInterface({ input: process.stdin });
  let step = 0;
  for await (const line of rl) {
    const cmd = JSON.parse(line) as { addresses?: string[]; bytes?: number; iters?: number; warmup?: number; quit?: boolean };
    if (cmd.quit) break;
    if (cmd.addresses) {
      await comm.connect(cmd.addresses);
      process.stdout.write(JSON.stringify({ connected: true }) + "\n");
      continue;
    }
    const n = Math.floor((cmd.bytes ?? 0) / 4);
    const data = new Float32Array(n);
    for (let k = 0; k < n; k++) data[k] = rank + (k % 7);
    const tensors = [{ name: "x", data }];
    await comm.allReduce(tensors, { step: step++, op: "sum" });
    // correctness of the first call: sum over r of (r + k%7)
    let bad = 0;
    for (let k = 0; k < n; k += Math.max(1, n >> 10)) if (data[k] !== (N * (N - 1)) / 2 + N * (k % 7)) bad++;
    for (let w = 1; w < (cmd.warmup ?? 1); w++) await comm.allReduce(tensors, { step: step++, op: "sum" });
    const times: number[] = [];
    const cpu0 = process.cpuUsage();
    for (let it = 0; it < (cmd.iters ?? 5); it++) {
      const t0 = process.hrtime.bigint();
      await comm.allReduce(tensors, { step: step++, op: "sum" });
      times.push(Number(process.hrtime.bigint() - t0) / 1e9);
    }
    const cpu = process.cpuUsage(cpu0);
    const cpuSec = (cpu.user + cpu.system) / 1e6 / Math.max(1, cmd.iters ?? 5);
    process.stdout.write(JSON.stringify({ times, bad, cpuSec }) + "\n");
  }
  await comm.close();
  process.exit(0);
}

// ---- driver --------------------------------------------------------------------------------------------

class Ring {
  private lines: string[][] = [];
  private waiters: (() => void)[] = [];
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
    });
  }
  async next<T>(): Promise<T[]> {
    while (this.lines.some((l) => l.length === 0)) await new Promise<void>((r) => this.waiters.push(r));
    return this.lines.map((l) => JSON.parse(l.shift()!) as T);
  }
  send(cmd: object): void {
    for (const p of this.procs) p.stdin!.write(JSON.stringify(cmd) + "\n");
  }
}

/** `--cpu-prof DIR`: every rank process writes a V8 CPU profile into DIR; `--node-args "..."`: extra node flags. */
function profArgs(): string[] {
  const dir = flag("--cpu-prof");
  const extra = flag("--node-args")?.split(" ").filter((a) => a.length > 0) ?? [];
  return dir ? ["--cpu-prof", `--cpu-prof-dir=${dir}`, ...extra] : extra;
}

async function startRing(N: number, chunkBytes: number, compression: string, inflight: number, send: string, transport: RingTransportKind): Promise<Ring> {
  const procs = Array.from({ length: N }, (_, r) => spawn(process.execPath, [...profArgs(), __filename, "--worker", String(r), String(N), String(chunkBytes), compression, String(inflight), send,
    process.argv.includes("--large-frames") ? "large-frames" : "default-frames", transport],
    { stdio: ["pipe", "pipe", "pipe"], env: { ...process.env, ...workerMallocEnv() } }));
  const ring = new Ring(procs);
  const addrs = await ring.next<{ address: string }>();
  ring.send({ addresses: addrs.map((a) => a.address) });
  await ring.next();
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

async function tcpLimit(): Promise<{ GBps: number; how: string }> {
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
  // plain node socket push: 1 GiB of 4 MiB writes to a loopback sink in another process-less socket pair
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

function fmtBytes(b: number): string {
  return b >= 1 << 20 ? `${b / (1 << 20)} MiB` : b >= 1024 ? `${b / 1024} KiB` : `${b} B`;
}

async function main(): Promise<void> {
  const json = process.argv.includes("--json");
  const maxBytes = Number(flag("--max-bytes") ?? 256 * 1024 * 1024);
  const minBytes = Number(flag("--min-bytes") ?? 1024);
  let sizes: number[] = flag("--sizes")?.split(",").map(Number) ?? [];
  if (sizes.length === 0) for (let s = minBytes; s <= maxBytes; s *= 4) sizes.push(s);
  const ranks = (flag("--ranks") ?? "2,4").split(",").map(Number);
  const itersFlag = flag("--iters");
  const warmup = Number(flag("--warmup") ?? 2);
  const chunkBytes = Number(flag("--chunk-bytes") ?? DEFAULT_CHUNK_BYTES);
  const compression = flag("--compression") ?? "none";
  const glooScript = flag("--gloo-script") ?? path.join(repoRoot(), "..", "shared", "peers", "gloo_allreduce.py");
  let gloo = !process.argv.includes("--no-gloo");
  if (gloo && !fs.existsSync(glooScript)) {
    console.error(`Gloo skipped: ${glooScript} not found (use --gloo-script)`);
    gloo = false;
  }
  if (gloo && spawnSync("/usr/bin/python3", ["-c", "import torch"]).status !== 0) {
    console.error("Gloo skipped: /usr/bin/python3 cannot import torch (apt-get install -y python3-torch libopenblas0-pthread)");
    gloo = false;
  }
  const itersFor = (b: number): number => (itersFlag ? Number(itersFlag) : Math.max(5, Math.min(50, Math.floor((1 << 30) / b))));

  const tcp = await tcpLimit();
  const rows: Row[] = [];
  const emit = (row: Row, extra = ""): void => {
    rows.push(row);
    if (json) console.log(JSON.stringify(row));
    else {
      const cpu = row.cpuSec === undefined ? "" : `cpu ${(row.cpuSec * 1e3).toFixed(2)} ms/rank `;
      console.log(`${fmtBytes(row.bytes).padStart(10)} ${String(row.N).padStart(3)}  ${row.impl.padEnd(14)} ${(row.seconds * 1e3).toFixed(3).padStart(10)} ms ${row.algbwGBps.toFixed(3).padStart(8)} ${row.busbwGBps.toFixed(3).padStart(8)}  ${cpu}${extra}`);
    }
  };
  if (!json) {
    console.log(`# loopback TCP limit: ${tcp.GBps.toFixed(2)} GB/s (${tcp.how}); chunkBytes=${chunkBytes} compression=${compression} warmup=${warmup}`);
    console.log(`${"size".padStart(10)} ${"N".padStart(3)}  ${"impl".padEnd(14)} ${"time".padStart(13)} ${"algbw".padStart(8)} ${"busbw".padStart(8)}  (GB/s; ratio = ringtrain busbw / gloo busbw)`);
  } else console.log(JSON.stringify({ impl: "loopback-tcp", GBps: tcp.GBps, how: tcp.how }));

  const transports = (flag("--transport") ?? DEFAULT_TRANSPORT).split(",") as RingTransportKind[];
  const impls = transports.map((t) => `ringtrain-${t}`);
  for (const N of ranks) {
    // all rings of this N stay up (idle when not measured) so every size is measured side by side
    const rings: Ring[] = [];
    for (const t of transports) rings.push(await startRing(N, chunkBytes, compression, Number(flag("--inflight-bytes") ?? 0), flag("--send") ?? "zero-copy", t));
    for (const bytes of sizes) {
      const iters = itersFor(bytes);
      const ours: Row[] = [];
      for (let k = 0; k < rings.length; k++) {
        const ring = rings[k];
        ring.send({ bytes, iters, warmup });
        const res = await ring.next<{ times: number[]; bad: number; cpuSec: number }>();
        if (res.some((r) => r.bad > 0)) throw new Error(`wrong all-reduce result at N=${N}, ${bytes} bytes (${impls[k]})`);
        const perIter = res[0].times.map((_, j) => Math.max(...res.map((r) => r.times[j])));
        const sec = median(perIter);
        const alg = bytes / sec / 1e9;
        const row: Row = { N, bytes, seconds: sec, algbwGBps: alg, busbwGBps: (alg * 2 * (N - 1)) / N, impl: impls[k],
          cpuSec: res.reduce((a, r) => a + r.cpuSec, 0) / res.length };
        ours.push(row);
        emit(row);
      }
      if (gloo) {
        const g = runGloo(glooScript, N, bytes, iters, warmup);
        if (g) {
          const galg = bytes / g.seconds / 1e9;
          const grow: Row = { N, bytes, seconds: g.seconds, algbwGBps: galg, busbwGBps: (galg * 2 * (N - 1)) / N, impl: "torch-gloo", cpuSec: g.cpuSec };
          emit(grow, ours.map((o) => `ratio ${o.impl.slice(10)} ${(o.busbwGBps / grow.busbwGBps).toFixed(2)}`).join(" ") + (g.note ? " " + g.note : ""));
        }
      }
    }
    for (const ring of rings) {
      ring.send({ quit: true });
      await Promise.all(ring.procs.map((p) => new Promise((r) => p.on("exit", r))));
    }
  }
  if (!json && gloo) {
    const big = rows.filter((r) => r.bytes >= 4 << 20);
    for (const impl of impls) {
      for (const N of ranks) {
        const pairs = big.filter((r) => r.N === N && r.impl === impl).map((o) => {
          const g = big.find((r) => r.N === N && r.bytes === o.bytes && r.impl === "torch-gloo");
          return g ? { bw: o.busbwGBps / g.busbwGBps, cpu: o.cpuSec !== undefined && g.cpuSec !== undefined ? o.cpuSec / g.cpuSec : NaN } : null;
        }).filter((x): x is { bw: number; cpu: number } => x !== null);
        if (pairs.length === 0) continue;
        const bw = pairs.map((p) => p.bw);
        const cpu = pairs.map((p) => p.cpu).filter((x) => !Number.isNaN(x));
        console.log(`# ${impl} N=${N}: busbw ratio vs gloo at >= 4 MiB: median ${median(bw).toFixed(2)}, min ${Math.min(...bw).toFixed(2)}`
          + (cpu.length ? `; cpu per iteration vs gloo: median ${median(cpu).toFixed(2)}x` : ""));
      }
    }
  }
}

if (process.argv.includes("--worker")) void worker();
else main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
