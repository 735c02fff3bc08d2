/**
 * Scaling efficiency on a simulated cluster with capped bandwidth (npm run bench:cluster -- --help).
 *
 * Each "node" is a network namespace on a private bridge (test/helpers/netns.ts) running the command of its
 * pod from the generated Kubernetes manifest, with `tc tbf` capping every veth in both directions. Weak
 * scaling: one worker per node with the same micro-batch, so N nodes do N times the work of one per step;
 * efficiency = tokens/s with N nodes / (N x tokens/s with 1 node). All nodes share this machine's cores, so
 * each node is pinned to its own core (taskset) and the 1-node baseline to one core: without that, N nodes
 * would compete for the same cores and the figure would measure the machine, not the network. With more nodes
 * than cores (e.g. 4 nodes on 2 cores), k = ceil(nodes / cores) nodes share each core; the baseline is then k
 * concurrent 1-node jobs pinned to one core, so a node has 1/k of a core in the baseline and in the cluster run
 * alike. Throughput is the median of tokens_per_s in the run's metrics.jsonl over the steps after the first.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import yargs from "yargs";
import { hideBin } from "yargs/helpers";
import { netnsUnavailable } from "../test/helpers/netns";
import { runSimulatedJob } from "../test/helpers/netns-job";
import { median } from "../launch/bench/common";

interface StepLine {
  step: number;
  tokens_per_s: number;
  per_rank: { rank: number; communication_ms: number; compute_ms: number }[];
}


function configText(model: string, nodes: number, micro: number, seqLen: number, steps: number): string {
  return `name: bench-cluster
output_dir: runs/bench-cluster
seed: 5
backend: wasm
model: { preset: ${model}, hidden_dropout: 0, attention_dropout: 0 }
tokenizer: { vocab_size: 8192 }
data: { max_seq_len: ${seqLen} }
batch: { global_batch_size: ${micro * nodes}, micro_batch_size: ${micro} }
training: { max_steps: ${steps} }
communication: { join_timeout_ms: 300000, timeout_ms: 300000, heartbeat_timeout_ms: 120000 }
`;
}

async function main(): Promise<void> {
  const a = await yargs(hideBin(process.argv))
    .option("model", { type: "string", requiresArg: true, default: "bert-tiny", choices: ["bert-tiny", "bert-mini", "bert-small"] })
    .option("nodes", { type: "number", requiresArg: true, default: 2 })
    .option("rates", { type: "string", requiresArg: true, default: "none,10gbit,1gbit,100mbit", describe: "comma-separated tc tbf rates; none = uncapped" })
    .option("steps", { type: "number", requiresArg: true, default: 8 })
    .option("micro", { type: "number", requiresArg: true, default: 16, describe: "sequences per worker per step" })
    .option("seq", { type: "number", requiresArg: true, default: 128 })
    .option("json", { type: "boolean", default: false })
    .option("cores", { type: "number", requiresArg: true, default: os.cpus().length, describe: "cores the nodes are spread over (pinned, node i on core i mod cores)" })
    .strict()
    .parseAsync();
  const why = netnsUnavailable();
  if (why) throw new Error(`bench:cluster needs network namespaces: ${why}`);
  const cores = Math.max(1, Math.min(a.cores, os.cpus().length));
  const share = Math.ceil(a.nodes / cores);
  if (share > 1) process.stderr.write(`${a.nodes} nodes on ${cores} cores: ${share} nodes share each core; the baseline runs ${share} 1-node jobs on one core\n`);
  const cpus = (n: number): string[] => Array.from({ length: n }, (_, i) => String(i % cores));
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "rt-bench-cluster-"));
  const measure = async (nodes: number, rate: string | undefined, label: string, pin = cpus(nodes)) => {
    const dir = path.join(root, label);
    const sim = await runSimulatedJob({
      configText: configText(a.model, nodes, a.micro, a.seq, a.steps), configName: "bench-cluster.yaml",
      nodes, workersPerNode: 1, rate, root: dir, timeoutMs: 600_000, cpus: pin,
    });
    if (sim.codes.some((c) => c !== 0)) throw new Error(`${label}: pods exited ${sim.codes.join(",")}\n${sim.podLogs.join("\n")}`);
    const lines = fs.readFileSync(path.join(sim.runDir, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l) as StepLine).filter((l) => l.step > 1);
    return {
      tokensPerS: median(lines.map((l) => l.tokens_per_s)),
      commMs: median(lines.map((l) => Math.max(...l.per_rank.map((r) => r.communication_ms)))),
      computeMs: median(lines.map((l) => Math.max(...l.per_rank.map((r) => r.compute_ms)))),
    };
  };
  try {
    // baseline: `share` concurrent 1-node jobs on core 0, so each has the share of a core a cluster node has
    const bases = await Promise.all(Array.from({ length: share }, (_, j) => measure(1, undefined, `base${j}`, ["0"])));
    const base = { tokensPerS: median(bases.map((b) => b.tokensPerS)), commMs: median(bases.map((b) => b.commMs)), computeMs: median(bases.map((b) => b.computeMs)) };
    const rows: Record<string, unknown>[] = [{ nodes: 1, rate: "-", tokens_per_s: base.tokensPerS, efficiency: 1, comm_ms: base.commMs, compute_ms: base.computeMs }];
    for (const r of a.rates.split(",").map((s) => s.trim()).filter(Boolean)) {
      const m = await measure(a.nodes, r === "none" ? undefined : r, `n${a.nodes}-${r}`);
      rows.push({ nodes: a.nodes, rate: r, tokens_per_s: m.tokensPerS, efficiency: m.tokensPerS / (a.nodes * base.tokensPerS), comm_ms: m.commMs, compute_ms: m.computeMs });
    }
    if (a.json) process.stdout.write(JSON.stringify({ model: a.model, micro: a.micro, seq: a.seq, steps: a.steps, nodes_per_core: share, loadavg: os.loadavg(), rows }, null, 2) + "\n");
    else {
      process.stdout.write(`${a.model}, seq ${a.seq}, ${a.micro} sequences per worker, ${a.steps} steps, ${share} node(s) per core, load ${os.loadavg().map((x) => x.toFixed(1)).join(" ")}\n`);
      process.stdout.write("| nodes | bandwidth | tokens/s | efficiency | comm ms | compute ms |\n|---:|---|---:|---:|---:|---:|\n");
      for (const row of rows) {
        process.stdout.write(`| ${row.nodes} | ${row.rate} | ${Math.round(row.tokens_per_s as number)} | ${(row.efficiency as number).toFixed(2)} | ${(row.comm_ms as number).toFixed(0)} | ${(row.compute_ms as number).toFixed(0)} |\n`);
      }
    }
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench:cluster: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
