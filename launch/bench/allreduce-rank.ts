/**
 * One rank process of `launch bench allreduce` (started by allreduce.ts, never by hand): listens on the ring,
 * then follows JSON commands on stdin (one per line) and answers on stdout:
 *   {addresses: [...]}            -> connects the ring                 -> {connected: true, via: "unix"|"tcp"|null}
 *   {bytes, iters, warmup}        -> times `iters` all-reduces of bytes -> {times: [s...], bad, cpuSec}
 *   {quit: true}                  -> closes and exits
 * Arguments: RANK N CHUNK_BYTES COMPRESSION INFLIGHT_BYTES SEND(zero-copy|copy) FRAMES(large-frames|default-frames) TRANSPORT
 *   TLS(- or the JSON of communication.tls's three PEM files) LINK(unix|tcp: whether Unix sockets are allowed)
 */
import * as readline from "node:readline";
import { RingCommunicator, type RingTransportKind } from "../../worker/collective/ring-communicator";
import { GrpcPeerTransport } from "../../worker/transport/grpc-peer-transport";
import { loadMutualTls, type TlsFiles } from "../../shared/security/tls";

/** A command sent to a rank process. */
export interface RankCommand {
  addresses?: string[];
  bytes?: number;
  iters?: number;
  warmup?: number;
  quit?: boolean;
}

/** A rank's answer to a measurement command. */
export interface RankTiming {
  /** Seconds per timed all-reduce. */
  times: number[];
  /** Elements of the first result that differed from the expected sum (sampled). */
  bad: number;
  /** CPU seconds (user + system) per timed iteration. */
  cpuSec: number;
  /** The user-space part of cpuSec (the rest is the kernel's: socket copies and TCP). */
  userSec: number;
}

/** Runs one rank with the positional arguments described in the file header; exits the process at the end. */
export async function rankMain(args: string[]): Promise<void> {
  const [rank, N, chunkBytes] = args.slice(0, 3).map(Number);
  const compression = args[3] as "none" | "fp16" | "bf16";
  const inflight = Number(args[4]) || undefined;
  const zeroCopySend = args[5] !== "copy";
  const transport = args[7] as RingTransportKind;
  const tls = args[8] === undefined || args[8] === "-" ? undefined : loadMutualTls(JSON.parse(args[8]) as TlsFiles);
  const localSockets = args[9] !== "tcp";
  const opts = { jobId: "bench", token: "bench-token", rank, worldSize: N, timeoutMs: 120_000, chunkBytes, compression, maxInflightBytes: inflight, zeroCopySend, transport, tls, localSockets };
  // large-frames: the gRPC transport with 16 MiB HTTP/2 DATA frames on the inbound connection
  const comm = args[6] === "large-frames"
    ? RingCommunicator.withTransport(opts, await GrpcPeerTransport.listen({ ...opts, chunkBytes, largeFrames: true }))
    : await RingCommunicator.listen(opts);
  process.stdout.write(JSON.stringify({ address: comm.address }) + "\n");
  const rl = readline.createInterface({ input: process.stdin });
  let step = 0;
  for await (const line of rl) {
    const cmd = JSON.parse(line) as RankCommand;
    if (cmd.quit) break;
    if (cmd.addresses) {
      await comm.connect(cmd.addresses);
      process.stdout.write(JSON.stringify({ connected: true, via: comm.inboundVia }) + "\n");
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
    const timed = Math.max(1, cmd.iters ?? 5);
    const answer: RankTiming = { times, bad, cpuSec: (cpu.user + cpu.system) / 1e6 / timed, userSec: cpu.user / 1e6 / timed };
    process.stdout.write(JSON.stringify(answer) + "\n");
  }
  await comm.close();
  process.exit(0);
}

if (require.main === module) {
  rankMain(process.argv.slice(2)).catch((e: unknown) => {
    console.error(e);
    process.exit(1);
  });
}
