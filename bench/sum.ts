/**
 * The ring's float32 sum side by side (npm run bench:sum): the plain loop `dst[i] += src[i]` against addInto (the
 * loop unrolled by eight), over a destination of --mib MiB in --block-kib KiB blocks (the size of a socket read),
 * alternating the two --rounds times. Prints GB/s of destination summed and each one's median time as a ratio to
 * the plain loop's.
 */
import yargs from "yargs";
import { hideBin } from "yargs/helpers";
import { addInto } from "../shared/codecs/float32-sum";
import { median } from "../launch/bench/common";

/** The flags of this script, parsed and checked. */
export interface SumBenchArgs {
  mib: number;
  blockKib: number;
  rounds: number;
  json: boolean;
}

/** Parses argv (without node and the script); exits with a message on an unknown flag or a bad value. */
export function parseArgs(argv: string[]): SumBenchArgs {
  const positive = (name: string) => (v: number): number => {
    if (!Number.isInteger(v) || v < 1) throw new Error(`--${name}: expected an integer >= 1, got ${v}`);
    return v;
  };
  const a = yargs(argv)
    .usage("npm run bench:sum -- [flags]\n\nThe ring's float32 sum: plain loop vs addInto (unrolled by eight).")
    .option("mib", { type: "number", default: 64, requiresArg: true, describe: "MiB of destination summed per round", coerce: positive("mib") })
    .option("block-kib", { type: "number", default: 256, requiresArg: true, describe: "KiB per call (one socket read)", coerce: positive("block-kib") })
    .option("rounds", { type: "number", default: 15, requiresArg: true, describe: "rounds; each times the two once, alternating", coerce: positive("rounds") })
    .option("json", { type: "boolean", default: false, describe: "one JSON line per implementation" })
    .parserConfiguration({ "duplicate-arguments-array": false, "boolean-negation": false })
    .strict()
    .parseSync();
  return { mib: a.mib, blockKib: a["block-kib"], rounds: a.rounds, json: a.json };
}

/** The baseline: what the ring did before shared/codecs/float32-sum.ts. */
function addPlain(dst: Float32Array, src: Float32Array): void {
  for (let i = 0; i < dst.length; i++) dst[i] += src[i];
}

function main(): void {
  const o = parseArgs(hideBin(process.argv));
  const total = (o.mib * 1024 * 1024) / 4;
  const block = (o.blockKib * 1024) / 4;
  const dst = new Float32Array(total);
  const src = new Float32Array(block);
  for (let i = 0; i < block; i++) src[i] = (i % 13) * 0.25;
  const impls: [string, (d: Float32Array, s: Float32Array) => void][] = [
    ["plain loop", addPlain],
    ["addInto (unrolled x8)", addInto],
  ];
  const times = new Map<string, number[]>(impls.map(([name]) => [name, []]));
  for (let r = 0; r < o.rounds; r++) {
    for (const [name, add] of impls) {
      const t0 = process.hrtime.bigint();
      for (let at = 0; at + block <= total; at += block) add(dst.subarray(at, at + block), src);
      times.get(name)!.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
  }
  const base = median(times.get(impls[0][0])!);
  if (!o.json) process.stdout.write(`# ${o.mib} MiB in ${o.blockKib} KiB blocks, ${o.rounds} alternating rounds; medians\n`);
  for (const [name] of impls) {
    const ms = median(times.get(name)!);
    const gbps = (total * 4) / (ms / 1e3) / 1e9;
    const line = { impl: name, median_ms: ms, min_ms: Math.min(...times.get(name)!), GBps: gbps, ratio_to_plain: base / ms };
    process.stdout.write(o.json ? JSON.stringify(line) + "\n" : `${name.padEnd(24)} ${ms.toFixed(1).padStart(7)} ms  ${gbps.toFixed(2)} GB/s  ${(base / ms).toFixed(2)}x the plain loop\n`);
  }
}

if (require.main === module) main();
