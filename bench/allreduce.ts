/**
 * All-reduce benchmark (npm run bench:allreduce): ringtrain's ring (per transport) vs the raw loopback TCP limit and
 * PyTorch Gloo's all_reduce, measured in the same run. nccl-tests definitions: algbw = S / t,
 * busbw = algbw * 2(N-1)/N. Our time per size is the median over iterations of the slowest rank's time.
 * A thin wrapper over `launch bench allreduce` (launch/bench/allreduce.ts), keeping this script's flags:
 *
 * Flags: --sizes 4096,4194304  --max-bytes N  --min-bytes N  --iters N  --warmup N  --ranks 2,4
 *        --chunk-bytes N  --inflight-bytes N  --send zero-copy|copy  --compression none|fp16|bf16  --large-frames
 *        --transport http2,http2-raw,grpc (one ring per transport, measured side by side with one Gloo run per size;
 *        default: the communicator's default transport)
 *        --no-gloo  --gloo-script PATH  --json (JSON lines)  --cpu-prof DIR (V8 CPU profile of every rank process)
 *        --node-args "--trace-gc ..." (extra node flags for the rank processes)
 */
import yargs from "yargs";
import { hideBin } from "yargs/helpers";
import { DEFAULT_CHUNK_BYTES, DEFAULT_TRANSPORT, RING_TRANSPORT_KINDS, type RingTransportKind } from "../worker/collective/ring-communicator";
import { allreduceHeader, allreduceLine, allreduceSummaryLines, DEFAULT_WARMUP, runAllreduceBench, sizeSweep, tlsFilesOf, type AllreduceOptions } from "../launch/bench/allreduce";
import { parseIntList, parseSizeList } from "../launch/bench/common";
import type { TlsFiles } from "../shared/security/tls";

/** The flags of this script, parsed and checked. */
export interface AllreduceBenchArgs {
  sizes: number[];
  ranks: number[];
  iters?: number;
  warmup: number;
  transports: RingTransportKind[];
  chunkBytes: number;
  inflightBytes: number;
  send: "zero-copy" | "copy";
  compression: AllreduceOptions["compression"];
  largeFrames: boolean;
  gloo: boolean;
  glooScript?: string;
  json: boolean;
  cpuProf?: string;
  nodeArgs: string[];
  tls?: TlsFiles;
  /** Ring neighbours may use Unix sockets (default true). */
  unixSockets: boolean;
}

function parseTransports(value: string): RingTransportKind[] {
  const ts = value.split(",").map((t) => t.trim());
  for (const t of ts) if (!(RING_TRANSPORT_KINDS as readonly string[]).includes(t)) throw new Error(`--transport: '${t}' is not one of ${RING_TRANSPORT_KINDS.join(", ")}`);
  return ts as RingTransportKind[];
}

/** Parses argv (without node and the script); exits with a message on an unknown flag or a bad value. */
export function parseArgs(argv: string[]): AllreduceBenchArgs {
  // boolean-negation is off: --no-gloo is a flag of its own, and an unknown --no-X is reported as no-X, not X.
  // --node-args takes node flags ("--trace-gc ..."), which yargs would read as flags of their own: pass it as --node-args=VALUE.
  const args: string[] = [];
  for (let i = 0; i < argv.length; i++) args.push(argv[i] === "--node-args" && i + 1 < argv.length ? `--node-args=${argv[++i]}` : argv[i]);
  const a = yargs(args)
    .usage("npm run bench:allreduce -- [flags]\n\nringtrain's ring all-reduce (per transport) vs the loopback TCP limit and PyTorch Gloo, nccl-tests style.")
    .option("sizes", { type: "string", requiresArg: true, describe: "message sizes in bytes, comma-separated: 4096,4194304 (default: --min-bytes to --max-bytes, x4 each)", coerce: (v: string) => parseSizeList(v, "sizes") })
    .option("min-bytes", { type: "number", default: 1024, requiresArg: true, describe: "smallest size of the default sweep" })
    .option("max-bytes", { type: "number", default: 256 * 1024 * 1024, requiresArg: true, describe: "largest size of the default sweep" })
    .option("iters", { type: "number", requiresArg: true, describe: "timed iterations per size (default: clamp(1 GiB / size, 5, 50))" })
    .option("warmup", { type: "number", default: DEFAULT_WARMUP, requiresArg: true, describe: "warm-up all-reduces per size (V8 compiles the hot path during the first few)" })
    .option("ranks", { type: "string", default: "2,4", requiresArg: true, describe: "ranks per ring, comma-separated (one process each)", coerce: (v: string) => parseIntList(v, "ranks", 2) })
    .option("transport", { type: "string", default: DEFAULT_TRANSPORT, requiresArg: true, describe: `ring transports, comma-separated, one ring each, measured side by side: ${RING_TRANSPORT_KINDS.join(",")}`, coerce: parseTransports })
    .option("chunk-bytes", { type: "number", default: DEFAULT_CHUNK_BYTES, requiresArg: true, describe: "ring chunk size in bytes" })
    .option("inflight-bytes", { type: "number", default: 0, requiresArg: true, describe: "bytes handed to the transport but not yet written out (0: the communicator's default)" })
    .option("send", { type: "string", default: "zero-copy", requiresArg: true, choices: ["zero-copy", "copy"], describe: "copy payloads straight from tensor memory into frames, or copy them first" })
    .option("compression", { type: "string", default: "none", requiresArg: true, choices: ["none", "fp16", "bf16"], describe: "wire compression" })
    .option("large-frames", { type: "boolean", default: false, describe: "the gRPC transport with 16 MiB HTTP/2 DATA frames on the inbound connection" })
    .option("no-gloo", { type: "boolean", default: false, describe: "skip PyTorch Gloo (measured by default)" })
    .option("gloo-script", { type: "string", requiresArg: true, describe: "the Gloo benchmark script to run (default: the bundled one)" })
    .option("json", { type: "boolean", default: false, describe: "print JSON lines instead of the table" })
    .option("cpu-prof", { type: "string", requiresArg: true, describe: "write a V8 CPU profile of every rank process into DIR" })
    .option("node-args", { type: "string", requiresArg: true, describe: 'extra node flags for the rank processes, e.g. "--trace-gc"' })
    .option("tls", { type: "string", requiresArg: true, describe: "mutual TLS on the ring: CA,CERT,KEY (PEM files, as communication.tls)" })
    .option("unix-sockets", { type: "boolean", default: true, describe: "neighbours connect over Unix sockets (communication.unix_sockets); --unix-sockets false: loopback TCP, as Gloo" })
    .parserConfiguration({ "duplicate-arguments-array": false, "boolean-negation": false })
    .strict()
    .parseSync();
  const extra = a["node-args"]?.split(" ").filter((x) => x.length > 0) ?? [];
  return {
    sizes: a.sizes ?? sizeSweep(a["min-bytes"], a["max-bytes"]),
    ranks: a.ranks,
    iters: a.iters,
    warmup: a.warmup,
    transports: a.transport,
    chunkBytes: a["chunk-bytes"],
    inflightBytes: a["inflight-bytes"],
    send: a.send === "copy" ? "copy" : "zero-copy",
    compression: a.compression as AllreduceOptions["compression"], // one of the choices
    largeFrames: a["large-frames"],
    gloo: !a["no-gloo"],
    ...(a["gloo-script"] !== undefined ? { glooScript: a["gloo-script"] } : {}),
    json: a.json,
    ...(a["cpu-prof"] !== undefined ? { cpuProf: a["cpu-prof"] } : {}),
    nodeArgs: a["cpu-prof"] ? ["--cpu-prof", `--cpu-prof-dir=${a["cpu-prof"]}`, ...extra] : extra,
    ...(a.tls !== undefined ? { tls: tlsFilesOf(a.tls) } : {}),
    unixSockets: a["unix-sockets"],
  };
}


async function main(): Promise<void> {
  const a = parseArgs(hideBin(process.argv));
  const json = a.json;
  const opts: AllreduceOptions = {
    ranks: a.ranks,
    sizes: a.sizes,
    iters: a.iters,
    warmup: a.warmup,
    transports: a.transports,
    chunkBytes: a.chunkBytes,
    compression: a.compression,
    inflightBytes: a.inflightBytes,
    send: a.send,
    largeFrames: a.largeFrames,
    gloo: a.gloo,
    ...(a.glooScript !== undefined ? { glooScript: a.glooScript } : {}),
    nodeArgs: a.nodeArgs,
    ...(a.tls !== undefined ? { tls: a.tls } : {}),
    unixSockets: a.unixSockets,
    onStart: (tcp, skipped) => {
      if (skipped !== undefined && a.gloo) console.error(`Gloo skipped: ${skipped}`);
      if (json) console.log(JSON.stringify({ impl: "loopback-tcp", GBps: tcp.GBps, how: tcp.how }));
      else process.stdout.write(allreduceHeader(tcp, opts));
    },
    onRow: (row, note) => {
      if (json) console.log(JSON.stringify(row));
      else process.stdout.write(allreduceLine(row, note));
    },
  };
  const res = await runAllreduceBench(opts);
  if (!json) process.stdout.write(allreduceSummaryLines(res));
}

if (require.main === module) {
  main().catch((e: unknown) => {
    console.error(e instanceof Error ? e.message : e);
    process.exit(1);
  });
}
