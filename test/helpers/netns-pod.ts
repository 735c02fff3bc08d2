/**
 * What a pod of the generated job would run, for running it outside Kubernetes (directly, or inside a
 * simulated node's network namespace): the container's env and argv as the kubelet builds them (downward API
 * and secret values supplied here), with volume mount paths mapped to local directories: the ConfigMap is
 * written out, /app is this checkout, /runs is a shared local directory (the PVC), and each Secret volume's items
 * are written to a local directory that stands in for its mount path, in the argv and in the config's text.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { parseAllDocuments } from "yaml";
import type { V1Job, V1JobTemplateSpec, V1PodTemplateSpec } from "@kubernetes/client-node";
import { resolveContainer } from "../../launch/k8s/expand";
import { APP_DIR, MOUNTS } from "../../launch/k8s/options";
import { COMPLETION_INDEX_ANNOTATION } from "../../launch/k8s/pod-template";
import type { JobSet } from "../../launch/k8s/jobset";
import { repoRoot } from "../../shared/paths";

/** Parses rendered multi-document YAML (what `kubectl apply` reads); throws on any YAML error. */
export function parseManifests(yaml: string): Record<string, unknown>[] {
  return parseAllDocuments(yaml).map((d) => {
    if (d.errors.length > 0) throw new Error(d.errors.map((e) => e.message).join("; "));
    return d.toJS() as Record<string, unknown>;
  });
}

/** The pod template of the Job, or of the JobSet's replicated job. */
export function podTemplateOf(docs: Record<string, unknown>[]): V1PodTemplateSpec {
  const job = docs.find((d) => d.kind === "Job") as V1Job | undefined;
  if (job) return job.spec!.template;
  const js = docs.find((d) => d.kind === "JobSet") as unknown as JobSet | undefined;
  if (!js) throw new Error("no Job or JobSet in the manifests");
  return (js.spec.replicatedJobs[0].template as V1JobTemplateSpec).spec!.template;
}

/** Values the kubelet would provide to pod `index`. */
export interface PodFacts {
  index: number;
  podIp: string;
  /** Secret name -> key -> value. */
  secrets: Record<string, Record<string, string>>;
  /** Local directory standing in for the pod's volumes (config/ and runs/ are created under it). */
  root: string;
}

/** The process pod `facts.index` would start: argv (argv[0] = "node" -> this Node) and its env. */
export function podProcess(docs: Record<string, unknown>[], facts: PodFacts): { argv: string[]; env: Record<string, string> } {
  const container = podTemplateOf(docs).spec!.containers[0];
  const { argv, env } = resolveContainer(container, {
    fieldRef: (p) => (p === `metadata.annotations['${COMPLETION_INDEX_ANNOTATION}']` ? String(facts.index) : p === "status.podIP" ? facts.podIp : undefined),
    secretKey: (name, key) => facts.secrets[name]?.[key],
  });
  // Secret volumes: mount path -> local directory holding the items the kubelet would project.
  const secretDirs = new Map<string, string>();
  for (const v of podTemplateOf(docs).spec!.volumes ?? []) {
    const mount = container.volumeMounts?.find((m) => m.name === v.name);
    if (v.secret === undefined || mount === undefined) continue;
    const dir = path.join(facts.root, `secret-${v.name}`);
    fs.mkdirSync(dir, { recursive: true });
    for (const item of v.secret.items ?? []) {
      const value = facts.secrets[v.secret.secretName ?? ""]?.[item.key];
      if (value === undefined) throw new Error(`Secret ${v.secret.secretName} has no key ${item.key}: the pod would not start`);
      fs.writeFileSync(path.join(dir, item.path), value);
    }
    secretDirs.set(mount.mountPath, dir);
  }
  const mapSecrets = (text: string): string => [...secretDirs].reduce((t, [mountPath, dir]) => t.split(`${mountPath}/`).join(`${dir}/`), text);
  const cm = docs.find((d) => d.kind === "ConfigMap") as { data: Record<string, string> };
  const configDir = path.join(facts.root, "config");
  fs.mkdirSync(configDir, { recursive: true });
  for (const [k, v] of Object.entries(cm.data)) fs.writeFileSync(path.join(configDir, k), mapSecrets(v));
  const mapPath = (a: string): string =>
    a.startsWith(`${APP_DIR}/`) ? path.join(repoRoot(), a.slice(APP_DIR.length + 1))
      : a.startsWith(`${MOUNTS.config}/`) ? path.join(configDir, a.slice(MOUNTS.config.length + 1))
        : a.startsWith(`${MOUNTS.runs}/`) ? path.join(facts.root, "runs", a.slice(MOUNTS.runs.length + 1)) : mapSecrets(a);
  if (argv[0] !== "node") throw new Error(`the container runs '${argv[0]}', expected node`);
  return { argv: [process.execPath, ...argv.slice(1).map(mapPath)], env };
}
