import type { V1ConfigMap, V1Job, V1PodFailurePolicy, V1Service } from "@kubernetes/client-node";
import { EXIT_CONFIG } from "../../shared/exit-codes";
import { CONTAINER_NAME, type K8sOptions } from "./options";
import { commonLabels, INSTANCE_LABEL, podTemplate } from "./pod-template";
import type { Topology } from "./topology";

/** ConfigMap with the run config, mounted read-only at /config. */
export function configMap(o: K8sOptions, t: Topology): V1ConfigMap {
  return {
    apiVersion: "v1",
    kind: "ConfigMap",
    metadata: { name: t.configMap, namespace: o.namespace, labels: commonLabels(o) },
    data: { [t.configFile]: o.configText },
  };
}

/** Headless Service: gives pod i the stable DNS name <job>-<i>.<service> (the coordinator's address on pod 0). */
export function headlessService(o: K8sOptions, t: Topology): V1Service {
  return {
    apiVersion: "v1",
    kind: "Service",
    metadata: { name: t.service, namespace: o.namespace, labels: commonLabels(o) },
    spec: {
      clusterIP: "None",
      selector: { [INSTANCE_LABEL]: o.name },
      // Pods have no readiness probe to wait for; publish their records as soon as they have an IP.
      publishNotReadyAddresses: true,
      ports: [{ name: "coordinator", port: o.port, targetPort: o.port, protocol: "TCP" }],
    },
  };
}

/**
 * Fail the whole job at once on a configuration error (launch exits EXIT_CONFIG: retrying cannot help), and do
 * not count disruptions (preemption, node drain, eviction) against backoffLimit.
 */
export function podFailurePolicy(): V1PodFailurePolicy {
  return {
    rules: [
      { action: "FailJob", onExitCodes: { containerName: CONTAINER_NAME, operator: "In", values: [EXIT_CONFIG] } },
      { action: "Ignore", onPodConditions: [{ type: "DisruptionTarget", status: "True" }] },
    ],
  };
}

/**
 * The Indexed Job spec: one pod per node, pod i runs `launch --node-rank i`, pod 0 also hosts the coordinator.
 * `backoffLimit` counts failed pods; one ring failure fails every pod, hence per-job restarts x nodes.
 * `activeDeadlineSeconds` (--active-deadline-seconds) ends a job that runs longer, retries included: a hung run
 * does not hold its nodes forever.
 */
export function indexedJobSpec(o: K8sOptions, t: Topology, backoffLimit: number): NonNullable<V1Job["spec"]> {
  return {
    completionMode: "Indexed",
    completions: o.nodes,
    parallelism: o.nodes,
    backoffLimit,
    activeDeadlineSeconds: o.activeDeadlineSeconds,
    podFailurePolicy: podFailurePolicy(),
    template: podTemplate(o, t),
  };
}

/** The plain Indexed Job. */
export function indexedJob(o: K8sOptions, t: Topology): V1Job {
  return {
    apiVersion: "batch/v1",
    kind: "Job",
    metadata: { name: t.name, namespace: o.namespace, labels: commonLabels(o) },
    spec: indexedJobSpec(o, t, o.restarts * o.nodes),
  };
}
