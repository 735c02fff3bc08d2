import type { V1ConfigMap, V1Job, V1Service } from "@kubernetes/client-node";
import { Document, isMap } from "yaml";
import { configMap, headlessService, indexedJob } from "./job";
import { jobSet, type JobSet } from "./jobset";
import type { K8sOptions } from "./options";
import { topologyOf } from "./topology";

/** One generated Kubernetes object. */
export type Manifest = V1ConfigMap | V1Service | V1Job | JobSet;

/** The objects of one training job, in apply order: ConfigMap, headless Service (plain Job only), Job or JobSet. */
export function buildManifests(o: K8sOptions): Manifest[] {
  const t = topologyOf(o);
  // The JobSet controller creates the headless Service itself (spec.network.subdomain).
  return o.jobset ? [configMap(o, t), jobSet(o, t)] : [configMap(o, t), headlessService(o, t), indexedJob(o, t)];
}

/** Comment block at the top of the YAML: what to create first, and where the run directory lives. */
function header(o: K8sOptions): string {
  const t = topologyOf(o);
  const lines = [
    `ringtrain job '${o.name}': ${o.nodes} node(s) x ${o.workersPerNode} ${o.gpus ? "GPU" : "CPU"} worker(s), coordinator ${t.coordinator}`,
    "Create the job token first (it is never written into this file):",
    `  kubectl -n ${o.namespace} create secret generic ${t.secret} --from-literal=token=$(openssl rand -hex 24)`,
    `Then: kubectl apply -f THIS_FILE${o.jobset ? "   (needs the JobSet controller, jobset.x-k8s.io/v1alpha2)" : ""}`,
    `Per-rank logs: /runs/${o.name}/logs/rank-R.log on the run volume; launch output: kubectl -n ${o.namespace} logs ${t.hostname(0)}...`,
  ];
  if (o.storage.kind === "ephemeral") {
    lines.push("WARNING: no --pvc or --host-path: the run directory is an emptyDir and checkpoints die with the pods.");
  }
  return lines.map((l) => ` ${l}`).join("\n");
}

/** Renders the manifests as one multi-document YAML stream (undefined fields dropped). */
export function renderManifests(o: K8sOptions, manifests: Manifest[] = buildManifests(o)): string {
  return manifests
    .map((m, i) => {
      const doc = new Document(JSON.parse(JSON.stringify(m)) as unknown);
      if (i === 0) doc.commentBefore = header(o);
      if (!isMap(doc.contents)) throw new Error("a manifest must render as a YAML mapping");
      return doc.toString({ lineWidth: 0 });
    })
    .join("---\n");
}
