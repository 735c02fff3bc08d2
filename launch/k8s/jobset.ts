import type { V1JobTemplateSpec, V1ObjectMeta } from "@kubernetes/client-node";
import type { K8sOptions } from "./options";
import { commonLabels } from "./pod-template";
import { indexedJobSpec } from "./job";
import { REPLICATED_JOB, type Topology } from "./topology";

/*
 * JobSet (jobset.x-k8s.io/v1alpha2, kubernetes-sigs/jobset) is a CRD; no Kubernetes model library ships its
 * types, so the fields used here are declared from its API reference (api/jobset/v1alpha2/jobset_types.go).
 * The embedded Job template is the typed V1JobTemplateSpec.
 */

/** A group of identical Jobs inside a JobSet. */
export interface ReplicatedJob {
  name: string;
  replicas?: number;
  template: V1JobTemplateSpec;
}

/** What the JobSet does when one of its Jobs fails. */
export interface JobSetFailurePolicyRule {
  name: string;
  action: "FailJobSet" | "RestartJobSet" | "RestartJobSetAndIgnoreMaxRestarts";
  /** Job failure reasons this rule matches, e.g. "PodFailurePolicy", "BackoffLimitExceeded". */
  onJobFailureReasons?: string[];
  targetReplicatedJobs?: string[];
}

/** Whole-JobSet restarts. */
export interface JobSetFailurePolicy {
  maxRestarts?: number;
  rules?: JobSetFailurePolicyRule[];
}

/** Pod DNS: the JobSet controller creates a headless Service named `subdomain`. */
export interface JobSetNetwork {
  enableDNSHostnames?: boolean;
  subdomain?: string;
  publishNotReadyAddresses?: boolean;
}

/** JobSet spec (the subset this generator uses). */
export interface JobSetSpec {
  replicatedJobs: ReplicatedJob[];
  network?: JobSetNetwork;
  failurePolicy?: JobSetFailurePolicy;
}

/** A JobSet object. */
export interface JobSet {
  apiVersion: "jobset.x-k8s.io/v1alpha2";
  kind: "JobSet";
  metadata: V1ObjectMeta;
  spec: JobSetSpec;
}

/**
 * The job as a JobSet: one replicated job holding the same Indexed Job template (backoffLimit 0: any failure
 * restarts the whole set, up to maxRestarts), except that a configuration error (the Job failed through its
 * podFailurePolicy) fails the JobSet at once. JobSet has no deadline of its own: --active-deadline-seconds goes
 * on the Job template (each attempt's Job), and a Job that ran out of time fails the JobSet without a restart,
 * as it ends a plain Job.
 */
export function jobSet(o: K8sOptions, t: Topology): JobSet {
  return {
    apiVersion: "jobset.x-k8s.io/v1alpha2",
    kind: "JobSet",
    metadata: { name: t.name, namespace: o.namespace, labels: commonLabels(o) },
    spec: {
      network: { enableDNSHostnames: true, subdomain: t.service, publishNotReadyAddresses: true },
      failurePolicy: {
        maxRestarts: o.restarts,
        rules: [
          { name: "config-error", action: "FailJobSet", onJobFailureReasons: ["PodFailurePolicy"] },
          ...(o.activeDeadlineSeconds !== undefined ? [{ name: "deadline", action: "FailJobSet" as const, onJobFailureReasons: ["DeadlineExceeded"] }] : []),
        ],
      },
      replicatedJobs: [
        { name: REPLICATED_JOB, replicas: 1, template: { metadata: { labels: commonLabels(o) }, spec: indexedJobSpec(o, t, 0) } },
      ],
    },
  };
}
