/**
 * `launch k8s`: the generated manifests validate against the Kubernetes schemas (kubernetes-models' validators,
 * compiled from the official OpenAPI spec: types, required fields, enums) with unknown fields rejected (field
 * lists of @kubernetes/client-node's models, generated from the same spec), and the container command is one
 * that `launch` really accepts: each pod's argv and env, expanded as the kubelet would, pass `launch --dry-run`
 * and resolve the expected world.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import * as tls from "node:tls";
import { X509Certificate } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { promisify } from "node:util";
import { parse as parseYaml } from "yaml";
import type { V1Container, V1Job } from "@kubernetes/client-node";
import * as k8sModels from "@kubernetes/client-node/dist/gen/models/all.js";
import { ConfigMap } from "kubernetes-models/v1/ConfigMap";
import { Service } from "kubernetes-models/v1/Service";
import { Job } from "kubernetes-models/batch/v1/Job";
import { JobTemplateSpec } from "kubernetes-models/batch/v1/JobTemplateSpec";
import { renderManifests } from "../launch/k8s/manifests";
import { buildK8sOutput, type K8sCommandFlags } from "../launch/k8s/command";
import { TLS_MOUNT } from "../launch/k8s/tls";
import { makePki, opensslUnavailable } from "./helpers/pki";
import { podPathProblems } from "../launch/k8s/pod-paths";
import { resolveK8sOptions, type K8sOptions } from "../launch/k8s/options";
import { topologyOf } from "../launch/k8s/topology";
import type { JobSet } from "../launch/k8s/jobset";
import { readWorkerEnv } from "../worker/env";
import { parseManifests, podProcess, podTemplateOf } from "./helpers/netns-pod";
import { repoRoot } from "../shared/paths";
import { EXIT_CONFIG } from "../shared/exit-codes";
import { ConfigError } from "../shared/config/load";

const run = promisify(execFile);
const LAUNCH = path.join(repoRoot(), "dist", "launch", "main.js");

/** A config small enough for any world up to 4 x 8 workers (global batch divisible by micro x world). */
const CONFIG = `name: k8s_Test.run
output_dir: runs/ignored
backend: wasm
model: { hidden_size: 32, num_layers: 1, num_heads: 2, intermediate_size: 64 }
tokenizer: { vocab_size: 512 }
data: { max_seq_len: 32 }
batch: { global_batch_size: 96, micro_batch_size: 1 }
training: { max_steps: 3 }
`;

function configFile(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "rt-k8s-"));
  const file = path.join(dir, "tiny.yaml");
  fs.writeFileSync(file, CONFIG);
  return file;
}

function options(extra: Partial<Parameters<typeof resolveK8sOptions>[0]> & { nodes: number }): K8sOptions {
  const config = extra.config ?? configFile();
  return resolveK8sOptions({ config, configText: fs.readFileSync(config, "utf8"), configName: "k8s_Test.run", image: "registry.example/ringtrain:gpu", ...extra });
}

// ---- strict validation -------------------------------------------------------------------------------------

type AttributeMap = { baseName: string; type: string }[];
const models = k8sModels as unknown as Record<string, { getAttributeTypeMap?: () => AttributeMap } | undefined>;

/** Walks `value` as the client-node model `type`; returns every unknown field and JSON type mismatch. */
function strictErrors(value: unknown, type: string, at: string): string[] {
  if (value === undefined || value === null) return [];
  const array = /^Array<(.+)>$/.exec(type);
  if (array) return Array.isArray(value) ? value.flatMap((v, i) => strictErrors(v, array[1], `${at}[${i}]`)) : [`${at}: expected an array`];
  const map = /^\{ \[key: string\]: (.+); \}$/.exec(type);
  if (map) {
    if (typeof value !== "object" || Array.isArray(value)) return [`${at}: expected a map`];
    return Object.entries(value).flatMap(([k, v]) => strictErrors(v, map[1], `${at}.${k}`));
  }
  switch (type) {
    case "string":
    case "Date":
      return typeof value === "string" ? [] : [`${at}: expected a string`];
    case "number":
      return typeof value === "number" ? [] : [`${at}: expected a number`];
    case "boolean":
      return typeof value === "boolean" ? [] : [`${at}: expected a boolean`];
    case "IntOrString":
      return typeof value === "string" || typeof value === "number" ? [] : [`${at}: expected an int or string`];
    case "any":
      return [];
  }
  const model = models[type];
  if (!model?.getAttributeTypeMap) return [`${at}: no model ${type} in @kubernetes/client-node`];
  if (typeof value !== "object" || Array.isArray(value)) return [`${at}: expected an object (${type})`];
  const fields = new Map(model.getAttributeTypeMap().map((a) => [a.baseName, a.type]));
  return Object.entries(value).flatMap(([k, v]) => (fields.has(k) ? strictErrors(v, fields.get(k)!, `${at}.${k}`) : [`${at}.${k}: unknown field of ${type}`]));
}

/**
 * JobSet v1alpha2 is a CRD (no model library ships it): the fields used, from the JobSet API reference, with
 * additionalProperties false; the embedded Job template is checked against the core schemas.
 */
const JOBSET_FIELDS: Record<string, Record<string, string>> = {
  JobSet: { apiVersion: "string", kind: "string", metadata: "V1ObjectMeta", spec: "JobSetSpec" },
  JobSetSpec: { replicatedJobs: "Array<ReplicatedJob>", network: "Network", failurePolicy: "FailurePolicy", successPolicy: "any", startupPolicy: "any", suspend: "boolean", managedBy: "string", ttlSecondsAfterFinished: "number", coordinator: "any" },
  ReplicatedJob: { name: "string", replicas: "number", template: "V1JobTemplateSpec", groupName: "string", dependsOn: "any" },
  Network: { enableDNSHostnames: "boolean", subdomain: "string", publishNotReadyAddresses: "boolean" },
  FailurePolicy: { maxRestarts: "number", restartStrategy: "string", rules: "Array<FailurePolicyRule>" },
  FailurePolicyRule: { name: "string", action: "string", onJobFailureReasons: "Array<string>", onJobFailureMessagePatterns: "Array<string>", targetReplicatedJobs: "Array<string>" },
};

function jobSetErrors(value: unknown, type: string, at: string): string[] {
  const array = /^Array<(.+)>$/.exec(type);
  if (array && JOBSET_FIELDS[array[1]]) return Array.isArray(value) ? value.flatMap((v, i) => jobSetErrors(v, array[1], `${at}[${i}]`)) : [`${at}: expected an array`];
  const fields = JOBSET_FIELDS[type];
  if (!fields) return strictErrors(value, type, at);
  if (typeof value !== "object" || value === null || Array.isArray(value)) return [`${at}: expected an object (${type})`];
  return Object.entries(value).flatMap(([k, v]) => (fields[k] ? jobSetErrors(v, fields[k], `${at}.${k}`) : [`${at}.${k}: unknown field of ${type}`]));
}

/** Every schema error of one generated document (empty = valid). */
function validateDocument(doc: Record<string, unknown>): string[] {
  const schema = (validate: () => void): string[] => {
    try {
      validate();
      return [];
    } catch (err) {
      return [`schema: ${err instanceof Error ? err.message : String(err)}`];
    }
  };
  switch (doc.kind) {
    case "ConfigMap":
      return [...schema(() => new ConfigMap(doc as never).validate()), ...strictErrors(doc, "V1ConfigMap", "ConfigMap")];
    case "Service":
      return [...schema(() => new Service(doc as never).validate()), ...strictErrors(doc, "V1Service", "Service")];
    case "Job":
      return [...schema(() => new Job(doc as never).validate()), ...strictErrors(doc, "V1Job", "Job")];
    case "JobSet": {
      const js = doc as unknown as JobSet;
      const errors = jobSetErrors(doc, "JobSet", "JobSet");
      if (js.apiVersion !== "jobset.x-k8s.io/v1alpha2") errors.push(`JobSet.apiVersion: ${js.apiVersion}`);
      for (const rj of js.spec?.replicatedJobs ?? []) errors.push(...schema(() => new JobTemplateSpec(rj.template as never).validate()));
      return errors;
    }
    default:
      return [`unexpected kind ${String(doc.kind)}`];
  }
}

test("manifests for several N x G validate against the Kubernetes schemas, unknown fields rejected", () => {
  const worlds: [number, number][] = [[1, 1], [2, 1], [2, 4], [4, 8], [3, 2]];
  for (const [nodes, g] of worlds) {
    for (const jobset of [false, true]) {
      const variants = [{}, { pvc: "ringtrain-runs" }, { hostPath: "/mnt/shared/runs" },
        { pvc: "ringtrain-runs", activeDeadlineSeconds: 86_400, cpuPerNode: "500m", memoryPerNode: "3.5Gi", tlsSecret: "rt-tls", clusterDomain: "corp.example" }];
      for (const storage of variants) {
        const o = options({ nodes, gpusPerNode: g, jobset, ...storage });
        const docs = parseManifests(renderManifests(o));
        assert.deepEqual(docs.map((d) => d.kind), jobset ? ["ConfigMap", "JobSet"] : ["ConfigMap", "Service", "Job"]);
        for (const d of docs) assert.deepEqual(validateDocument(d), [], `${nodes}x${g} jobset=${jobset} ${JSON.stringify(storage)} ${String(d.kind)}`);
      }
    }
  }
  // CPU pods: --workers-per-node, no GPU limit.
  const cpu = parseManifests(renderManifests(options({ nodes: 2, workersPerNode: 3 })));
  for (const d of cpu) assert.deepEqual(validateDocument(d), []);
  const c = podTemplateOf(cpu).spec!.containers[0];
  // Defaults: a core and 4Gi per worker; no GPU.
  assert.deepEqual(c.resources, { requests: { cpu: "3", memory: "12Gi" }, limits: { memory: "12Gi" } });
  assert.ok(c.args!.includes("--workers") && !c.args!.includes("--gpus"));
});

test("the validator catches unknown fields, wrong types and bad enum values (it can fail)", () => {
  const base = parseManifests(renderManifests(options({ nodes: 2, gpusPerNode: 2 })));
  const mutate = (f: (job: V1Job) => void): string[] => {
    const docs = structuredClone(base);
    const job = docs.find((d) => d.kind === "Job") as V1Job;
    f(job);
    return validateDocument(job as unknown as Record<string, unknown>);
  };
  assert.match(mutate((j) => Object.assign(j.spec!.template.spec!.containers[0], { imagePullPolcy: "Always" })).join("\n"), /imagePullPolcy: unknown field of V1Container/);
  assert.match(mutate((j) => Object.assign(j.spec!, { completionsMode: "Indexed" })).join("\n"), /completionsMode: unknown field of V1JobSpec/);
  assert.match(mutate((j) => (j.spec!.template.spec!.restartPolicy = "Sometimes")).join("\n"), /restartPolicy must be equal to one of the allowed values/);
  assert.match(mutate((j) => Object.assign(j.spec!, { completions: "2" })).join("\n"), /completions: expected a number/);
  assert.match(mutate((j) => delete (j.spec!.template.spec!.containers[0] as Partial<V1Container>).name).join("\n"), /containers\/0 must have required property name/);
  const js = parseManifests(renderManifests(options({ nodes: 2, gpusPerNode: 1, jobset: true })))[1];
  (js as { spec: { failurePolicy: Record<string, unknown> } }).spec.failurePolicy.maxRestart = 3;
  assert.match(validateDocument(js).join("\n"), /failurePolicy\.maxRestart: unknown field of FailurePolicy/);
});

test("the Job has what a multi-node run needs: indexed pods, GPUs, shm, secret token, failure policy", () => {
  const o = options({ nodes: 4, gpusPerNode: 8, pvc: "runs-claim", port: 31000 });
  const t = topologyOf(o);
  const yaml = renderManifests(o);
  const [cm, svc, jobDoc] = parseManifests(yaml);
  const job = jobDoc as V1Job;
  assert.equal(t.name, "k8s-test-run");
  assert.equal((cm as { data: Record<string, string> }).data["tiny.yaml"], CONFIG);
  assert.equal((svc as { spec: { clusterIP: string } }).spec.clusterIP, "None");
  assert.equal(job.spec!.completionMode, "Indexed");
  assert.equal(job.spec!.completions, 4);
  assert.equal(job.spec!.parallelism, 4);
  assert.equal(job.spec!.backoffLimit, 3 * 4);
  const pod = job.spec!.template.spec!;
  assert.equal(pod.restartPolicy, "Never");
  assert.equal(pod.subdomain, t.service);
  const c = pod.containers[0];
  assert.deepEqual(c.resources, { requests: { cpu: "8", memory: "32Gi" }, limits: { memory: "32Gi", "nvidia.com/gpu": "8" } });
  assert.equal(job.spec!.activeDeadlineSeconds, undefined);
  const shm = pod.volumes!.find((v) => v.name === "shm")!;
  assert.equal(shm.emptyDir!.medium, "Memory");
  assert.ok(c.volumeMounts!.some((m) => m.name === "shm" && m.mountPath === "/dev/shm"));
  assert.equal(pod.volumes!.find((v) => v.name === "runs")!.persistentVolumeClaim!.claimName, "runs-claim");
  const token = c.env!.find((e) => e.name === "RINGTRAIN_TOKEN")!;
  assert.equal(token.value, undefined);
  assert.deepEqual(token.valueFrom!.secretKeyRef, { name: t.secret, key: "token" });
  assert.match(yaml, /kubectl -n default create secret generic k8s-test-run-token --from-literal=token=\$\(openssl rand -hex 24\)/);
  const rules = job.spec!.podFailurePolicy!.rules;
  assert.deepEqual(rules[0], { action: "FailJob", onExitCodes: { containerName: c.name, operator: "In", values: [EXIT_CONFIG] } });
  assert.deepEqual(rules[1], { action: "Ignore", onPodConditions: [{ type: "DisruptionTarget", status: "True" }] });
  assert.equal(t.coordinator, "k8s-test-run-0.k8s-test-run:31000");
  assert.ok(c.args!.join(" ").includes(`--coordinator ${t.coordinator} --gpus 8`));
  // The JobSet: same template, whole-set restarts, the controller's service named by network.subdomain.
  const js = parseManifests(renderManifests({ ...o, jobset: true }))[1] as unknown as JobSet;
  assert.equal(js.spec.failurePolicy!.maxRestarts, 3);
  assert.equal(js.spec.network!.subdomain, t.service);
  assert.equal(js.spec.replicatedJobs[0].template.spec!.backoffLimit, 0);
  assert.equal(topologyOf({ ...o, jobset: true }).coordinator, "k8s-test-run-node-0-0.k8s-test-run:31000");
});

test("bad k8s flags and configs are refused with EXIT_CONFIG before anything reaches a cluster", async () => {
  const cfg = configFile();
  assert.throws(() => options({ nodes: 2 }), /exactly one of --gpus-per-node/);
  assert.throws(() => options({ nodes: 2, gpusPerNode: 1, name: "Bad_Name" }), /DNS-1123/);
  assert.throws(() => options({ nodes: 2, gpusPerNode: 1, pvc: "a", hostPath: "/x" }), /not both/);
  assert.throws(() => options({ nodes: 2, gpusPerNode: 2, port: 29501 }), /collides with the peer ports/);
  // 5 x 1 workers: 96 is not a multiple of 5 -> the same check launch does.
  await assert.rejects(run(process.execPath, [LAUNCH, "k8s", cfg, "--nodes", "5", "--gpus-per-node", "1", "--image", "x"]), (e: { code?: number; stderr?: string }) => {
    assert.equal(e.code, EXIT_CONFIG);
    assert.match(e.stderr ?? "", /global_batch_size/);
    return true;
  });
  const out = path.join(path.dirname(cfg), "out.yaml");
  await run(process.execPath, [LAUNCH, "k8s", cfg, "--nodes", "2", "--gpus-per-node", "1", "--image", "registry.example/ringtrain:gpu", "--output", out]);
  assert.equal(fs.readFileSync(out, "utf8"), renderManifests(options({ nodes: 2, gpusPerNode: 1, config: cfg })));
  await assert.rejects(run(process.execPath, [LAUNCH, "k8s", path.dirname(cfg), "--nodes", "2", "--gpus-per-node", "1", "--image", "x"]), (e: { code?: number; stderr?: string }) => {
    assert.equal(e.code, EXIT_CONFIG);
    assert.match(e.stderr ?? "", /is a directory/);
    return true;
  });
});

test("launch k8s refuses data paths relative to the config (in the pods that is the ConfigMap) and warns about other local files", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "rt-k8s-paths-"));
  fs.mkdirSync(path.join(dir, "txt"));
  fs.writeFileSync(path.join(dir, "txt", "a.txt"), "some text for the corpus\n");
  const withPaths = (paths: string): string => CONFIG.replace("data: { max_seq_len: 32 }", `data: { max_seq_len: 32, corpus: files, paths: [${paths}] }`);
  const rel = path.join(dir, "rel.yaml");
  fs.writeFileSync(rel, withPaths("txt"));
  const read = (file: string): Record<string, unknown> => parseYaml(fs.readFileSync(file, "utf8")) as Record<string, unknown>;
  assert.throws(() => podPathProblems(rel, read(rel)), /field data\.paths\[0\]: 'txt' is relative to the config's folder, which in the pods is the ConfigMap mount \/config/);
  const abs = path.join(dir, "abs.yaml");
  fs.writeFileSync(abs, withPaths(path.join(dir, "txt")));
  const warnings = podPathProblems(abs, read(abs));
  assert.equal(warnings.length, 1);
  assert.match(warnings[0], /field data\.paths\[0\]: the pods read '.*txt' inside the container/);
  assert.deepEqual(podPathProblems(configFile(), parseYaml(CONFIG) as Record<string, unknown>), []);
  // validation_paths and test_paths are resolved against the config's folder too.
  const split = path.join(dir, "split.yaml");
  fs.writeFileSync(split, withPaths(path.join(dir, "txt")).replace("corpus: files,", "corpus: files, validation_paths: [txt/a.txt],"));
  assert.throws(() => podPathProblems(split, read(split)), /field data\.validation_paths\[0\]: 'txt\/a\.txt' is relative/);
  fs.rmSync(dir, { recursive: true, force: true });
});

/** Runs what pod `index` would run (see helpers/netns-pod.ts) with --dry-run appended. */
/** What `launch --dry-run` prints, plus the pod's env. */
interface DryRun {
  world: Record<string, unknown>;
  jobId: string;
  config: { output_dir: string; training: { max_steps: number }; optimizer: { lr: number }; communication: { tls?: Record<string, string> } };
  env: Record<string, string>;
}

/**
 * Runs what pod `index` would run (see helpers/netns-pod.ts) with --dry-run appended. `secrets` adds Secrets
 * besides the job token; ring peers reach the pod's workers at `advertise` (default: its IP; launch passes
 * --advertise-host on to them).
 */
async function dryRunPod(o: K8sOptions, docs: Record<string, unknown>[], index: number, root: string, secrets: Record<string, Record<string, string>> = {}, advertise = `10.4.0.${10 + index}`): Promise<DryRun> {
  const { argv, env } = podProcess(docs, { index, podIp: `10.4.0.${10 + index}`, secrets: { [topologyOf(o).secret]: { token: "s3cret-token" }, ...secrets }, root });
  const { stdout } = await run(argv[0], [...argv.slice(1), "--dry-run"], { cwd: repoRoot(), env: { PATH: process.env.PATH, ...env } });
  assert.equal(argv[argv.indexOf("--advertise-host") + 1], advertise);
  return { ...(JSON.parse(stdout) as Omit<DryRun, "env">), env };
}

test("each pod's command, expanded as the kubelet would, passes launch --dry-run with the expected world", async () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "rt-k8s-pod-"));
  try {
    for (const jobset of [false, true]) {
      const o = options({ nodes: 3, gpusPerNode: 2, jobset, port: 29777 });
      const t = topologyOf(o);
      const docs = parseManifests(renderManifests(o));
      const container = podTemplateOf(docs).spec!.containers[0];
      for (const index of jobset ? [0, 2] : [0, 1, 2]) {
        const r = await dryRunPod(o, docs, index, root);
        assert.deepEqual(r.world, { nodes: 3, nodeRank: index, workersPerNode: 2, worldSize: 6, coordinatorAddress: t.coordinator, useGpus: true });
        assert.equal(r.jobId, o.name);
        assert.equal(r.config.output_dir, path.join(root, "runs", o.name));
        assert.equal(r.env.RINGTRAIN_TOKEN, "s3cret-token");
        assert.ok(!JSON.stringify(docs).includes("s3cret-token"));
        // The ports the manifest names are the ones used: the coordinator's in --coordinator, and each local
        // worker's peer port as worker/env.ts derives it from the env launch passes on.
        const ports = new Map(container.ports!.map((p) => [p.name, p.containerPort]));
        assert.equal(ports.get("coordinator"), Number(t.coordinator.split(":")[1]));
        for (let local = 0; local < 2; local++) {
          const w = readWorkerEnv({ ...r.env, COORDINATOR_ADDR: t.coordinator, NODE_RANK: String(index), LOCAL_RANK: String(local), LOCAL_WORLD_SIZE: "2", WORLD_SIZE: "6" });
          assert.equal(w.peerPort, ports.get(`peer-${local}`));
        }
      }
    }
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});

// ---- --set, resources, deadline, warnings, TLS, flags ------------------------------------------------------

/** `launch k8s` flags for the test config (2 pods x 2 GPU workers unless overridden). */
function flags(extra: Partial<K8sCommandFlags> = {}): K8sCommandFlags {
  return { config: extra.config ?? configFile(), nodes: 2, gpusPerNode: 2, image: "registry.example/ringtrain:gpu", pvc: "runs", ...extra };
}

function configMapText(docs: Record<string, unknown>[]): string {
  const cm = docs.find((d) => d.kind === "ConfigMap") as { data: Record<string, string> };
  return Object.values(cm.data)[0];
}

test("--set overrides are validated and reach the ConfigMap, so the pods run them; errors name the field", async () => {
  const out = buildK8sOutput(flags({ set: ["training.max_steps=7", "optimizer.lr=2e-4", "name=other.run"] }));
  const docs = parseManifests(out.yaml);
  for (const d of docs) assert.deepEqual(validateDocument(d), []);
  const text = configMapText(docs);
  assert.match(text, /^# tiny\.yaml, as the pods run it \(launch k8s\)\n# with --set training\.max_steps=7 --set optimizer\.lr=2e-4 --set name=other\.run\n/);
  const podCfg = parseYaml(text) as { training: { max_steps: number }; optimizer: { lr: number }; name: string; model: unknown };
  assert.deepEqual([podCfg.training.max_steps, podCfg.optimizer.lr, podCfg.name], [7, 2e-4, "other.run"]);
  assert.deepEqual(podCfg.model, parseYaml(CONFIG).model, "the rest of the config is kept");
  // The default job name follows the overridden config name.
  assert.equal(out.options.name, "other-run");
  // What the pods run: the overridden config.
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "rt-k8s-set-"));
  try {
    const r = await dryRunPod(out.options, docs, 1, root);
    assert.deepEqual([r.config.training.max_steps, r.config.optimizer.lr], [7, 2e-4]);
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
  // Refused before any YAML, naming the field (schema, then the world's batch check).
  const refused = (set: string[], re: RegExp): void => assert.throws(() => buildK8sOutput(flags({ set })), (e: Error) => e instanceof ConfigError && re.test(e.message));
  refused(["optimizer.lrr=1"], /tiny\.yaml: invalid config:\n {2}field optimizer: unknown field 'lrr'/);
  refused(["training.max_steps=many"], /field training\.max_steps: .*expected number, received string/i);
  refused(["training.max_steps"], /--set 'training\.max_steps': expected field\.path=value/);
  refused(["backend=wasm", "backend.kind=x"], /cannot override 'backend\.kind': 'backend' is not a mapping/);
  refused(["batch.global_batch_size=10"], /field batch\.global_batch_size: 10 is not divisible by micro_batch_size \(1\) x workers \(4\)/);
  // Paths set on the command line are checked as the file's are.
  refused(["data.corpus=files", "data.paths=[txt]"], /field data\.paths\[0\]: 'txt' is relative to the config's folder/);
  // On the command line: --set before or after the config, repeatable; a bad one exits 2 and prints no YAML.
  const cfg = configFile();
  const { stdout } = await run(process.execPath, [LAUNCH, "k8s", "--set", "training.max_steps=5", cfg, "--set", "seed=11", "--nodes", "2", "--gpus-per-node", "2", "--image", "x", "--pvc", "runs"]);
  assert.deepEqual([(parseYaml(configMapText(parseManifests(stdout))) as { training: { max_steps: number } }).training.max_steps, (parseYaml(configMapText(parseManifests(stdout))) as { seed: number }).seed], [5, 11]);
  await assert.rejects(run(process.execPath, [LAUNCH, "k8s", cfg, "--set", "training.max_steps=0", "--nodes", "2", "--gpus-per-node", "2", "--image", "x"]), (e: { code?: number; stderr?: string; stdout?: string }) => {
    assert.equal(e.code, EXIT_CONFIG);
    assert.match(e.stderr ?? "", /field training\.max_steps/);
    assert.equal(e.stdout, "");
    return true;
  });
});

test("pods request CPU and memory (defaults per worker, or --cpu-per-node / --memory-per-node); quantities are checked", () => {
  const res = (extra: Partial<Parameters<typeof resolveK8sOptions>[0]>): unknown => {
    const docs = parseManifests(renderManifests(options({ nodes: 2, ...extra })));
    for (const d of docs) assert.deepEqual(validateDocument(d), []);
    return podTemplateOf(docs).spec!.containers[0].resources;
  };
  assert.deepEqual(res({ gpusPerNode: 4 }), { requests: { cpu: "4", memory: "16Gi" }, limits: { memory: "16Gi", "nvidia.com/gpu": "4" } });
  assert.deepEqual(res({ gpusPerNode: 8, cpuPerNode: "30", memoryPerNode: "200Gi" }), { requests: { cpu: "30", memory: "200Gi" }, limits: { memory: "200Gi", "nvidia.com/gpu": "8" } });
  assert.deepEqual(res({ workersPerNode: 2, cpuPerNode: "1500m", memoryPerNode: "6G" }), { requests: { cpu: "1500m", memory: "6G" }, limits: { memory: "6G" } });
  assert.deepEqual(res({ workersPerNode: 1, cpuPerNode: "0.5" }), { requests: { cpu: "0.5", memory: "4Gi" }, limits: { memory: "4Gi" } });
  const bad: [Partial<Parameters<typeof resolveK8sOptions>[0]>, RegExp][] = [
    [{ memoryPerNode: "16GB" }, /--memory-per-node '16GB' is not a Kubernetes memory quantity \(e\.g\. 16Gi\)/],
    [{ memoryPerNode: "0Gi" }, /--memory-per-node '0Gi' must be more than zero/],
    [{ cpuPerNode: "2 cores" }, /--cpu-per-node '2 cores' is not a Kubernetes cpu quantity/],
    [{ cpuPerNode: "0.0001" }, /--cpu-per-node '0\.0001' is not a Kubernetes cpu quantity/],
    [{ cpuPerNode: "0" }, /--cpu-per-node '0' must be more than zero/],
    [{ shmSize: "lots" }, /--shm-size 'lots' is not a Kubernetes memory quantity/],
  ];
  for (const [extra, re] of bad) assert.throws(() => options({ nodes: 2, gpusPerNode: 1, ...extra }), re);
});

test("--active-deadline-seconds ends a hung job: Job spec, or each JobSet attempt's Job plus a rule failing the JobSet", () => {
  const job = parseManifests(renderManifests(options({ nodes: 2, gpusPerNode: 1, activeDeadlineSeconds: 7200 }))).find((d) => d.kind === "Job") as V1Job;
  assert.equal(job.spec!.activeDeadlineSeconds, 7200);
  const js = parseManifests(renderManifests(options({ nodes: 2, gpusPerNode: 1, jobset: true, activeDeadlineSeconds: 7200 })))[1] as unknown as JobSet;
  assert.equal(js.spec.replicatedJobs[0].template.spec!.activeDeadlineSeconds, 7200);
  assert.deepEqual(js.spec.failurePolicy!.rules!.map((r) => [r.name, r.action, r.onJobFailureReasons]), [
    ["config-error", "FailJobSet", ["PodFailurePolicy"]],
    ["deadline", "FailJobSet", ["DeadlineExceeded"]],
  ]);
  // Without the flag: no deadline anywhere, no deadline rule.
  const plain = parseManifests(renderManifests(options({ nodes: 2, gpusPerNode: 1, jobset: true })))[1] as unknown as JobSet;
  assert.equal(plain.spec.replicatedJobs[0].template.spec!.activeDeadlineSeconds, undefined);
  assert.equal(plain.spec.failurePolicy!.rules!.length, 1);
  for (const v of [0, -5, 1.5]) assert.throws(() => options({ nodes: 2, gpusPerNode: 1, activeDeadlineSeconds: v }), /--active-deadline-seconds must be an integer in 1\.\./);
});

test("warnings go to stderr (and the header comment), never into the YAML documents on stdout", async () => {
  const cfg = configFile();
  // No --pvc (ephemeral run directory), a data path the image must provide, a cluster domain that TLS alone uses.
  const { stdout, stderr } = await run(process.execPath, [LAUNCH, "k8s", cfg, "--nodes", "2", "--workers-per-node", "1", "--image", "x",
    "--set", "data.corpus=files", "--set", "data.paths=[/data/corpus.txt]", "--cluster-domain", "corp.example"]);
  const warnings = stderr.trim().split("\n");
  assert.equal(warnings.length, 3, stderr);
  for (const w of warnings) assert.match(w, /^launch k8s: warning: /);
  assert.match(stderr, /field data\.paths\[0\]: the pods read '\/data\/corpus\.txt' inside the container/);
  assert.match(stderr, /no --pvc or --host-path: the run directory is an emptyDir/);
  assert.match(stderr, /--cluster-domain corp\.example has no effect without --tls-secret/);
  // stdout: YAML documents only (what `kubectl apply -f -` reads); each warning is also a comment there.
  const docs = parseManifests(stdout);
  assert.deepEqual(docs.map((d) => d.kind), ["ConfigMap", "Service", "Job"]);
  for (const d of docs) assert.deepEqual(validateDocument(d), []);
  assert.ok(!JSON.stringify(docs).includes("warning"), "no warning inside a document");
  for (const w of warnings) assert.ok(stdout.includes(`# WARNING: ${w.replace("launch k8s: warning: ", "")}\n`), w);
  // With a PVC and nothing else to warn about: silent.
  const quiet = await run(process.execPath, [LAUNCH, "k8s", cfg, "--nodes", "2", "--workers-per-node", "1", "--image", "x", "--pvc", "runs"]);
  assert.equal(quiet.stderr, "");
  assert.doesNotMatch(quiet.stdout, /WARNING/);
});

/** The test config with communication.tls naming local files (relative to the config, as `launch` allows). */
function tlsConfigFile(): string {
  const file = configFile();
  fs.appendFileSync(file, "communication:\n  tls: { ca_file: pki/ca.pem, cert_file: pki/node.pem, key_file: pki/node.key }\n");
  return file;
}

test("TLS in the config needs --tls-secret: the Secret is mounted, the ConfigMap points at it, pods use DNS names the certificate names", async (t) => {
  assert.throws(() => buildK8sOutput(flags({ config: tlsConfigFile() })), (e: Error) => e instanceof ConfigError &&
    /tiny\.yaml: field communication\.tls: the pods cannot read this machine's files: put them in a Secret with the keys ca\.crt \(ca_file\), tls\.crt \(cert_file\), tls\.key \(key_file\) and pass --tls-secret NAME/.test(e.message));
  assert.throws(() => buildK8sOutput(flags({ config: tlsConfigFile(), tlsSecret: "Bad_Secret" })), /--tls-secret 'Bad_Secret' must be a DNS-1123 subdomain/);
  assert.throws(() => buildK8sOutput(flags({ config: tlsConfigFile(), tlsSecret: "rt-tls", set: ["communication.transport=http2"] })), /field communication\.transport: http2 does not support tls/);
  const noPki = opensslUnavailable();
  const pkiDir = fs.mkdtempSync(path.join(os.tmpdir(), "rt-k8s-pki-"));
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "rt-k8s-tls-"));
  try {
    for (const jobset of [false, true]) {
      // With --tls-secret, a config without communication.tls gets it too: the flag asks for TLS.
      for (const config of [tlsConfigFile(), configFile()]) {
        const out = buildK8sOutput(flags({ config, nodes: 3, jobset, tlsSecret: "rt-tls", namespace: "ml", clusterDomain: "corp.example" }));
        const o = out.options;
        const topo = topologyOf(o);
        const docs = parseManifests(out.yaml);
        for (const d of docs) assert.deepEqual(validateDocument(d), []);
        const podCfg = parseYaml(configMapText(docs)) as { communication: { tls: Record<string, string> } };
        assert.deepEqual(podCfg.communication.tls, { ca_file: `${TLS_MOUNT}/ca.crt`, cert_file: `${TLS_MOUNT}/tls.crt`, key_file: `${TLS_MOUNT}/tls.key` });
        const pod = podTemplateOf(docs).spec!;
        assert.deepEqual(pod.volumes!.find((v) => v.name === "tls")!.secret, { secretName: "rt-tls", items: ["ca.crt", "tls.crt", "tls.key"].map((k) => ({ key: k, path: k })) });
        assert.deepEqual(pod.containers[0].volumeMounts!.find((m) => m.name === "tls"), { name: "tls", mountPath: TLS_MOUNT, readOnly: true });
        const host0 = jobset ? "k8s-test-run-node-0-0" : "k8s-test-run-0";
        assert.equal(topo.coordinator, `${host0}.k8s-test-run.ml.svc.corp.example:29400`);
        assert.equal(topo.certificateWildcard, "*.k8s-test-run.ml.svc.corp.example");
        assert.match(out.yaml, /# Its certificate \(serverAuth \+ clientAuth, signed by the CA\) must carry subjectAltName DNS:\*\.k8s-test-run\.ml\.svc\.corp\.example\n/);
        assert.match(out.yaml, /kubectl -n ml create secret generic rt-tls --from-file=ca\.crt=CA\.pem --from-file=tls\.crt=NODE\.pem --from-file=tls\.key=NODE\.key/);
        assert.deepEqual(out.warnings, []);
        // A certificate for the documented name covers every pod, as the coordinator and as a ring peer.
        const pki = noPki === undefined ? makePki(pkiDir, `${jobset}`, `DNS:${topo.certificateWildcard}`) : undefined;
        const pem = (f: string | undefined): string => (f === undefined ? "not a certificate\n" : fs.readFileSync(f, "utf8"));
        const secret = { "rt-tls": { "ca.crt": pem(pki?.ca), "tls.crt": pem(pki?.cert), "tls.key": pem(pki?.key) } };
        const legacy = pki === undefined ? undefined : new X509Certificate(fs.readFileSync(pki.cert)).toLegacyObject();
        for (const index of [0, 2]) {
          const r = await dryRunPod(o, docs, index, root, secret, topo.podFqdn(index));
          assert.equal(topo.podFqdn(index), `${jobset ? "k8s-test-run-node-0" : "k8s-test-run"}-${index}.k8s-test-run.ml.svc.corp.example`);
          assert.equal(r.world.coordinatorAddress, topo.coordinator);
          // The pod reads the files the Secret projects (here: local stand-ins for the mount).
          assert.equal(fs.readFileSync(r.config.communication.tls!.cert_file, "utf8"), secret["rt-tls"]["tls.crt"]);
          if (legacy !== undefined) assert.equal(tls.checkServerIdentity(topo.podFqdn(index), legacy), undefined);
        }
        if (legacy !== undefined) {
          assert.equal(tls.checkServerIdentity(topo.coordinator.split(":")[0], legacy), undefined);
          assert.ok(tls.checkServerIdentity(`${host0}.k8s-test-run.default.svc.corp.example`, legacy) instanceof Error, "another namespace is not covered");
        }
      }
    }
    if (noPki !== undefined) t.diagnostic(`certificate names not checked: ${noPki}`);
  } finally {
    fs.rmSync(pkiDir, { recursive: true, force: true });
    fs.rmSync(root, { recursive: true, force: true });
  }
});

test("the k8s flags belong to `launch k8s` alone: `launch --help` does not list them, `launch` refuses them", async () => {
  const k8sOnly = ["--cpu-per-node", "--memory-per-node", "--active-deadline-seconds", "--tls-secret", "--cluster-domain", "--gpus-per-node", "--shm-size", "--jobset"];
  const train = await run(process.execPath, [LAUNCH, "--help"]);
  const k8s = await run(process.execPath, [LAUNCH, "k8s", "--help"]);
  for (const f of k8sOnly) {
    assert.ok(!train.stdout.includes(f), `launch --help lists ${f}`);
    assert.ok(k8s.stdout.includes(f), `launch k8s --help lacks ${f}`);
  }
  assert.ok(train.stdout.includes("--set") && k8s.stdout.includes("--set"), "both take --set");
  await assert.rejects(run(process.execPath, [LAUNCH, configFile(), "--workers", "2", "--dry-run", "--tls-secret", "x"]), (e: { code?: number; stderr?: string }) => {
    assert.equal(e.code, EXIT_CONFIG);
    assert.match(e.stderr ?? "", /Unknown arguments?: tls-secret/);
    return true;
  });
});
