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
import { DEFAULT_CHUNK_BYTES, DEFAULT_TRANSPORT, type RingTransportKind } from "../worker/collective/ring-communicator";
import { allreduceHeader, allreduceLine, allreduceSummaryLines, runAllreduceBench, sizeSweep, type AllreduceOptions } from "../launch/bench/allreduce";
import { parseIntList, parseSizeList } from "../launch/bench/common";

function flag(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

async function main(): Promise<void> {
  const json = process.argv.includes("--json");
  const sizesFlag = flag("--sizes");
  const sizes = sizesFlag !== undefined ? parseSizeList(sizesFlag, "sizes") : sizeSweep(Number(flag("--min-bytes") ?? 1024), Number(flag("--max-bytes") ?? 256 * 1024 * 1024));
  const profDir = flag("--cpu-prof");
  const extra = flag("--node-args")?.split(" ").filter((a) => a.length > 0) ?? [];
  const glooScript = flag("--gloo-script");
  const opts: AllreduceOptions = {
    ranks: parseIntList(flag("--ranks") ?? "2,4", "ranks", 2),
    sizes,
    iters: flag("--iters") !== undefined ? Number(flag("--iters")) : undefined,
    warmup: Number(flag("--warmup") ?? 2),
    transports: (flag("--transport") ?? DEFAULT_TRANSPORT).split(",") as RingTransportKind[],
    chunkBytes: Number(flag("--chunk-bytes") ?? DEFAULT_CHUNK_BYTES),
    compression: (flag("--compression") ?? "none") as AllreduceOptions["compression"],
    inflightBytes: Number(flag("--inflight-bytes") ?? 0),
    send: flag("--send") === "copy" ? "copy" : "zero-copy",
    largeFrames: process.argv.includes("--large-frames"),
    gloo: !process.argv.includes("--no-gloo"),
    ...(glooScript !== undefined ? { glooScript } : {}),
    nodeArgs: profDir ? ["--cpu-prof", `--cpu-prof-dir=${profDir}`, ...extra] : extra,
    onStart: (tcp, skipped) => {
      if (skipped !== undefined && !process.argv.includes("--no-gloo")) console.error(`Gloo skipped: ${skipped}`);
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

main().catch((e: unknown) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
