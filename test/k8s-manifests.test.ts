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
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { promisify } from "node:util";
import type { V1Container, V1Job } from "@kubernetes/client-node";
import * as k8sModels from "@kubernetes/client-node/dist/gen/models/all.js";
import { ConfigMap } from "kubernetes-models/v1/ConfigMap";
import { Service } from "kubernetes-models/v1/Service";
import { Job } from "kubernetes-models/batch/v1/Job";
import { JobTemplateSpec } from "kubernetes-models/batch/v1/JobTemplateSpec";
import { buildManifests, renderManifests } from "../launch/k8s/manifests";
import { podPathProblems } from "../launch/k8s/command";
import { resolveK8sOptions, type K8sOptions } from "../launch/k8s/options";
import { topologyOf } from "../launch/k8s/topology";
import type { JobSet } from "../launch/k8s/jobset";
import { readWorkerEnv } from "../worker/env";
import { parseManifests, podProcess, podTemplateOf } from "./helpers/netns-pod";
import { repoRoot } from "../shared/paths";
import { EXIT_CONFIG } from "../shared/exit-codes";

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
      for (const storage of [{}, { pvc: "ringtrain-runs" }, { hostPath: "/mnt/shared/runs" }]) {
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
  assert.equal(c.resources, undefined);
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
  assert.deepEqual(c.resources!.limits, { "nvidia.com/gpu": "8" });
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
  assert.throws(() => podPathProblems(rel, fs.readFileSync(rel, "utf8")), /field data\.paths\[0\]: 'txt' is relative to the config's folder, which in the pods is the ConfigMap mount \/config/);
  const abs = path.join(dir, "abs.yaml");
  fs.writeFileSync(abs, withPaths(path.join(dir, "txt")));
  const warnings = podPathProblems(abs, fs.readFileSync(abs, "utf8"));
  assert.equal(warnings.length, 1);
  assert.match(warnings[0], /field data\.paths\[0\]: the pods read '.*txt' inside the container/);
  assert.deepEqual(podPathProblems(configFile(), CONFIG), []);
  fs.rmSync(dir, { recursive: true, force: true });
});

/** Runs what pod `index` would run (see helpers/netns-pod.ts) with --dry-run appended. */
async function dryRunPod(o: K8sOptions, docs: Record<string, unknown>[], index: number, root: string): Promise<{ world: Record<string, unknown>; jobId: string; config: { output_dir: string }; env: Record<string, string> }> {
  const { argv, env } = podProcess(docs, { index, podIp: `10.4.0.${10 + index}`, secrets: { [topologyOf(o).secret]: { token: "s3cret-token" } }, root });
  const { stdout } = await run(argv[0], [...argv.slice(1), "--dry-run"], { cwd: repoRoot(), env: { PATH: process.env.PATH, ...env } });
  // Ring peers reach this pod's workers at its IP (launch passes --advertise-host on to them).
  assert.equal(argv[argv.indexOf("--advertise-host") + 1], `10.4.0.${10 + index}`);
  return { ...(JSON.parse(stdout) as { world: Record<string, unknown>; jobId: string; config: { output_dir: string } }), env };
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
