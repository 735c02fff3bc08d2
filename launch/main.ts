#!/usr/bin/env node
/**
 * The `launch` command line (yargs):
 *   launch [--workers N | --gpus N] [--nodes M --node-rank R --coordinator HOST:PORT] CONFIG.yaml
 *   launch --resume RUN_DIR
 *   launch fill-mask --model DIR "text with [MASK]"
 *   launch predict --model DIR [--adapter DIR] FILE
 *   launch demo
 *   launch bench allreduce|step|scaling|simulate ...   (benchmarks: tables on stdout, --json FILE, --html FILE)
 */
import * as fs from "node:fs";
import yargs from "yargs";
import { hideBin } from "yargs/helpers";
import { ConfigError } from "../shared/config/load";
import { EXIT_CONFIG, EXIT_INTERNAL, EXIT_OK } from "../shared/exit-codes";
import { asInputError, onceFlag, wholeFlag } from "./input-error";
import { type TrainArgs } from "./train";
import { launchWithRestarts } from "./restart";
import { fillMask } from "./fill-mask";
import { runDemo } from "./demo";
import { predictFile } from "./predict";
import { runK8sCommand } from "./k8s/command";
import { registerBenchCommand } from "./bench/command";

const BACKENDS = ["auto", "wasm", "cpu", "tensorflow"];

async function main(argv: string[]): Promise<number> {
  let code = EXIT_OK;
  const parser = yargs(argv)
    .scriptName("launch")
    .usage("$0 [options] CONFIG.yaml\n\nData-parallel BERT pretraining and fine-tuning over a gRPC ring.")
    .command(
      "$0 [config]",
      "train (or resume) a model described by CONFIG.yaml",
      (y) =>
        y
          .positional("config", { type: "string", describe: "run configuration (YAML)" })
          .option("workers", { type: "number", alias: "nproc-per-node", describe: "worker processes on this node (CPU slots; torchrun's --nproc-per-node)" })
          .option("gpus", { type: "number", describe: "worker processes on this node, one GPU each (CUDA_VISIBLE_DEVICES)" })
          .option("nodes", { type: "number", alias: "nnodes", describe: "number of machines (env NNODES; torchrun's --nnodes)" })
          .option("node-rank", { type: "number", describe: "this machine's index, 0-based (env NODE_RANK)" })
          .option("coordinator", { type: "string", describe: "HOST:PORT of the coordinator on node 0 (env COORDINATOR_ADDR)" })
          .option("advertise-host", { type: "string", describe: "host name or IP other nodes use to reach this node's workers" })
          .option("job-id", { type: "string", describe: "job id shared by all nodes (default: the config's name; env RINGTRAIN_JOB_ID)" })
          .option("resume", { type: "string", describe: "continue the run in RUN_DIR from its latest good checkpoint" })
          .option("max-steps", { type: "number", describe: "override training.max_steps" })
          .option("output", { type: "string", describe: "override output_dir" })
          .option("backend", { type: "string", choices: ["auto", "wasm", "cpu", "tensorflow"], describe: "override backend" })
          .option("seed", { type: "number", describe: "override seed" })
          // nargs 1: each --set takes one assignment, so `--set a=1 CONFIG.yaml` leaves the config positional
          .option("set", { type: "string", array: true, nargs: 1, describe: "override any field (repeatable): --set optimizer.lr=1e-3" })
          .option("dry-run", { type: "boolean", describe: "validate and print the resolved config and world, start nothing" })
          .option("overwrite", { type: "boolean", describe: "replace the previous run in output_dir (its checkpoints, metrics and logs) instead of refusing to start" })
          .option("auto-resume", { type: "boolean", describe: "continue output_dir from its latest good checkpoint if it has one (for restarted jobs), else start fresh" })
          .option("max-restarts", { type: "number", default: 0, describe: "restart from the last checkpoint after a worker failure, up to N times (single node; see elastic.* in the config)" })
          .option("timeline", { type: "boolean", describe: "write a per-rank Chrome trace-event timeline to RUN_DIR/timeline/ and RUN_DIR/timeline.json (training.timeline)" })
          .option("quiet", { type: "boolean", describe: "no progress output" }),
      async (a) => {
        for (const flag of ["workers", "gpus", "nodes", "node-rank", "coordinator", "advertise-host", "job-id", "resume", "max-steps", "output", "backend", "seed", "max-restarts"]) {
          onceFlag(flag, a[flag]);
        }
        wholeFlag("--max-restarts", a["max-restarts"], 0);
        const args: TrainArgs = {
          config: a.config, resume: a.resume, autoResume: a["auto-resume"], workers: a.workers, gpus: a.gpus, nodes: a.nodes, nodeRank: a["node-rank"],
          coordinator: a.coordinator, advertiseHost: a["advertise-host"], jobId: a["job-id"], dryRun: a["dry-run"], quiet: a.quiet, overwrite: a.overwrite,
          overrides: { maxSteps: a["max-steps"], output: a.output, backend: a.backend, seed: a.seed, set: a.set, timeline: a.timeline },
        };
        code = await launchWithRestarts(args, a["max-restarts"]);
      },
    )
    .command(
      "fill-mask <text..>",
      "show the top-k predictions for each [MASK] in TEXT",
      (y) =>
        y
          .positional("text", { type: "string", array: true, demandOption: true })
          .option("model", { type: "string", demandOption: true, describe: "checkpoint directory, or a run directory" })
          .option("top-k", { type: "number", default: 5, coerce: (v: unknown) => wholeFlag("--top-k", v, 1) })
          .option("cased", { type: "boolean", describe: "tokenize cased (default: as the checkpoint's tokenizer_config.json says; uncased without one)" })
          .option("backend", { type: "string", default: "auto", choices: BACKENDS })
          .option("json", { type: "boolean", describe: "print JSON" }),
      async (a) => {
        const results = await fillMask(a.model, a.text as string[], { topK: a["top-k"], backend: a.backend, cased: a.cased }).catch((e: unknown) => {
          throw asInputError(e, "fill-mask: ");
        });
        if (a.json) process.stdout.write(JSON.stringify(results) + "\n");
        else {
          for (const r of results) {
            process.stdout.write(`${r.text}\n  [MASK] at ${r.position}: ${r.candidates.map((c) => `${c.token} (${(c.prob * 100).toFixed(1)}%)`).join(", ")}\n`);
          }
        }
      },
    )
    .command(
      "k8s <config>",
      "print Kubernetes manifests (ConfigMap, headless Service, Indexed Job or JobSet) that run CONFIG.yaml on N nodes",
      (y) =>
        y
          .positional("config", { type: "string", demandOption: true, describe: "run configuration (YAML), shipped in a ConfigMap" })
          .option("nodes", { type: "number", demandOption: true, describe: "pods (one per machine)" })
          .option("gpus-per-node", { type: "number", describe: "GPU workers per pod (nvidia.com/gpu limit)" })
          .option("workers-per-node", { type: "number", describe: "CPU workers per pod (CPU image)" })
          .option("image", { type: "string", demandOption: true, describe: "container image (see Dockerfile)" })
          .option("namespace", { type: "string", describe: "namespace (default: default)" })
          .option("jobset", { type: "boolean", describe: "emit a JobSet (jobset.x-k8s.io/v1alpha2) instead of an Indexed Job" })
          .option("name", { type: "string", describe: "job name (default: the config's name)" })
          .option("port", { type: "number", describe: "coordinator port (default 29400)" })
          .option("peer-port-base", { type: "number", describe: "first ring peer port (default 29500)" })
          .option("pvc", { type: "string", describe: "PersistentVolumeClaim for the run directory (ReadWriteMany)" })
          .option("host-path", { type: "string", describe: "node directory for the run directory (shared file system)" })
          .option("restarts", { type: "number", describe: "whole-job restarts (default 3)" })
          .option("shm-size", { type: "string", describe: "size of the in-memory /dev/shm (default 8Gi)" })
          .option("cpu-per-node", { type: "string", describe: "CPU request per pod, a Kubernetes quantity (default: one core per worker)" })
          .option("memory-per-node", { type: "string", describe: "memory request and limit per pod, a Kubernetes quantity (default: 4Gi per worker)" })
          .option("active-deadline-seconds", { type: "number", describe: "end the job after N seconds (Job activeDeadlineSeconds; JobSet: each attempt's Job)" })
          .option("tls-secret", { type: "string", describe: "Secret with ca.crt, tls.crt, tls.key for communication.tls, mounted in every pod" })
          .option("cluster-domain", { type: "string", describe: "cluster DNS domain in the pods' names under TLS (default cluster.local)" })
          .option("set", { type: "string", array: true, nargs: 1, describe: "override any config field (repeatable), as launch does: --set optimizer.lr=1e-3" })
          .option("output", { type: "string", describe: "write the YAML to FILE instead of stdout" }),
      (a) => {
        runK8sCommand({
          config: a.config, nodes: a.nodes, gpusPerNode: a["gpus-per-node"], workersPerNode: a["workers-per-node"], image: a.image,
          namespace: a.namespace, jobset: a.jobset, name: a.name, port: a.port, peerPortBase: a["peer-port-base"], pvc: a.pvc,
          hostPath: a["host-path"], restarts: a.restarts, shmSize: a["shm-size"], cpuPerNode: a["cpu-per-node"], memoryPerNode: a["memory-per-node"],
          activeDeadlineSeconds: a["active-deadline-seconds"], tlsSecret: a["tls-secret"], clusterDomain: a["cluster-domain"], set: a.set, output: a.output,
        });
      },
    )
    .command(
      "predict <file>",
      "classify the examples of FILE (JSONL, CSV or text lines) with a fine-tuned classifier",
      (y) =>
        y
          .positional("file", { type: "string", demandOption: true })
          .option("model", { type: "string", demandOption: true, describe: "classifier checkpoint, or the base model of --adapter (checkpoint or run directory)" })
          .option("adapter", { type: "string", describe: "adapter directory of a PEFT run (adapter_model.safetensors + adapter_config.json)" })
          .option("output", { type: "string", describe: "also write the predictions as JSONL to this file" })
          .option("batch-size", { type: "number", default: 32, coerce: (v: unknown) => wholeFlag("--batch-size", v, 1) })
          .option("backend", { type: "string", default: "auto", choices: BACKENDS })
          .option("text-field", { type: "string", default: "text", describe: "JSONL key / CSV column of the text (data.text_field)" })
          .option("text-pair-field", { type: "string", default: "text_pair", describe: "JSONL key / CSV column of the optional second text (data.text_pair_field)" })
          .option("label-field", { type: "string", default: "label", describe: "JSONL key / CSV column of the optional gold label, for the accuracy (data.label_field)" })
          .option("json", { type: "boolean", describe: "print JSONL instead of a table" }),
      async (a) => {
        const fields = { text: a["text-field"], textPair: a["text-pair-field"], label: a["label-field"] };
        const preds = await predictFile({ model: a.model, adapter: a.adapter, file: a.file, backend: a.backend, batchSize: a["batch-size"], fields }).catch((e: unknown) => {
          throw asInputError(e, "predict: ");
        });
        const lines = preds.map((p) => JSON.stringify(p));
        if (a.output !== undefined) fs.writeFileSync(a.output, lines.join("\n") + "\n");
        if (a.json) process.stdout.write(lines.join("\n") + "\n");
        else {
          for (const p of preds) {
            const conf = (100 * p.probs[p.label]).toFixed(1);
            process.stdout.write(`${p.id}\t${p.label}\t${conf}%${p.expected !== undefined ? `\t(label ${p.expected})` : ""}\n`);
          }
          const labelled = preds.filter((p) => p.expected !== undefined);
          if (labelled.length > 0) {
            const right = labelled.filter((p) => p.expected === p.label).length;
            process.stdout.write(`accuracy on the ${labelled.length} labelled examples: ${((100 * right) / labelled.length).toFixed(2)}%\n`);
          }
        }
      },
    )
    .command(
      "demo",
      "pretrain bert-tiny on the Brown corpus with 2 workers, then show fill-mask predictions",
      (y) => y.option("workers", { type: "number", default: 2 }).option("max-steps", { type: "number", default: 60 }).option("output", { type: "string", default: "runs/demo" }),
      async (a) => {
        code = await runDemo({ workers: a.workers, maxSteps: a["max-steps"], output: a.output });
      },
    );
  registerBenchCommand(parser, (c) => {
    code = c;
  });
  parser
    .strict()
    .help()
    .alias("h", "help")
    .version(false)
    .wrap(Math.min(110, process.stdout.columns ?? 110))
    .fail((msg, err) => {
      // yargs wraps its own validation and coerce failures in YError: bad arguments, like a message of its own
      throw err === undefined || err === null ? new ConfigError(msg) : err.name === "YError" ? new ConfigError(err.message) : err;
    });
  await parser.parseAsync();
  return code;
}

main(hideBin(process.argv)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    if (err instanceof ConfigError) {
      process.stderr.write(`launch: ${err.message}\n`);
      process.exit(EXIT_CONFIG);
    }
    process.stderr.write(`launch: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
    process.exit(EXIT_INTERNAL);
  },
);
