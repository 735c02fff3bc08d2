import type { V1EnvVar, V1PodTemplateSpec, V1Volume, V1VolumeMount, V1ContainerPort } from "@kubernetes/client-node";
import { APP_DIR, CONTAINER_NAME, MOUNTS, type K8sOptions } from "./options";
import { containerResources } from "./resources";
import { TLS_MOUNT, TLS_SECRET_KEYS } from "./tls";
import type { Topology } from "./topology";

/** Annotation the Job controller sets on each pod of an Indexed Job (its completion index). */
export const COMPLETION_INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index";
/** Label every pod of the job carries; the headless Service selects on it. */
export const INSTANCE_LABEL = "app.kubernetes.io/instance";

/** Labels shared by all generated objects. */
export function commonLabels(o: K8sOptions): Record<string, string> {
  return { "app.kubernetes.io/name": "ringtrain", [INSTANCE_LABEL]: o.name, "app.kubernetes.io/component": "trainer" };
}

/**
 * The environment of the training container. Kubernetes expands `$(VAR)` in command/args from exactly these
 * (plus what the Job controller adds), so everything the args refer to is defined here explicitly.
 */
function containerEnv(o: K8sOptions, t: Topology): V1EnvVar[] {
  return [
    // The Job controller injects this too (and skips it when present); defining it keeps the args self-contained.
    { name: "JOB_COMPLETION_INDEX", valueFrom: { fieldRef: { fieldPath: `metadata.annotations['${COMPLETION_INDEX_ANNOTATION}']` } } },
    // Workers advertise the pod IP to their ring peers: no DNS lookup on the all-reduce path.
    { name: "POD_IP", valueFrom: { fieldRef: { fieldPath: "status.podIP" } } },
    // Under TLS they advertise this name instead, which the certificates carry (a pod IP is known too late).
    ...(o.tlsSecret !== undefined ? [{ name: "POD_DNS_NAME", value: t.podFqdn("$(JOB_COMPLETION_INDEX)") }] : []),
    { name: "RINGTRAIN_JOB_ID", value: o.name },
    // Never inline: create it with `kubectl create secret generic <name>-token --from-literal=token=...`.
    { name: "RINGTRAIN_TOKEN", valueFrom: { secretKeyRef: { name: t.secret, key: "token" } } },
    { name: "RINGTRAIN_PEER_PORT_BASE", value: String(o.peerPortBase) },
  ];
}

/** The `launch` arguments of pod `$(JOB_COMPLETION_INDEX)`; env references are expanded by the kubelet. */
function launchArgs(o: K8sOptions, t: Topology): string[] {
  return [
    `${APP_DIR}/dist/launch/main.js`,
    "--nodes", String(o.nodes),
    "--node-rank", "$(JOB_COMPLETION_INDEX)",
    "--coordinator", t.coordinator,
    o.gpus ? "--gpus" : "--workers", String(o.workersPerNode),
    "--advertise-host", o.tlsSecret !== undefined ? "$(POD_DNS_NAME)" : "$(POD_IP)",
    "--output", `${MOUNTS.runs}/${o.name}`,
    // A restarted job (backoffLimit, JobSet maxRestarts) continues from the run's last complete checkpoint.
    "--auto-resume",
    `${MOUNTS.config}/${t.configFile}`,
  ];
}

function runVolume(o: K8sOptions): V1Volume {
  switch (o.storage.kind) {
    case "pvc":
      return { name: "runs", persistentVolumeClaim: { claimName: o.storage.claimName } };
    case "hostPath":
      return { name: "runs", hostPath: { path: o.storage.path, type: "DirectoryOrCreate" } };
    case "ephemeral":
      return { name: "runs", emptyDir: {} };
  }
}

/** The TLS Secret's three files; a missing key keeps the pod from starting (an event names it). */
function tlsVolume(secretName: string): V1Volume {
  return { name: "tls", secret: { secretName, items: Object.values(TLS_SECRET_KEYS).map((key) => ({ key, path: key })) } };
}

/** The pod template shared by the Indexed Job and the JobSet's replicated job. */
export function podTemplate(o: K8sOptions, t: Topology): V1PodTemplateSpec {
  const ports: V1ContainerPort[] = [{ name: "coordinator", containerPort: o.port, protocol: "TCP" }];
  for (let r = 0; r < o.workersPerNode; r++) ports.push({ name: `peer-${r}`, containerPort: o.peerPortBase + r, protocol: "TCP" });
  const mounts: V1VolumeMount[] = [
    { name: "config", mountPath: MOUNTS.config, readOnly: true },
    { name: "runs", mountPath: MOUNTS.runs },
    // Docker's 64 MB /dev/shm default breaks data loaders and tfjs-node; give it RAM.
    { name: "shm", mountPath: MOUNTS.shm },
  ];
  if (o.tlsSecret !== undefined) mounts.push({ name: "tls", mountPath: TLS_MOUNT, readOnly: true });
  return {
    metadata: { labels: commonLabels(o) },
    spec: {
      restartPolicy: "Never",
      // The Indexed Job sets hostname <job>-<index>; subdomain makes it <job>-<index>.<service> in DNS.
      subdomain: t.service,
      // launch stops its workers on SIGTERM; the last complete checkpoint stays intact.
      terminationGracePeriodSeconds: 60,
      containers: [
        {
          name: CONTAINER_NAME,
          image: o.image,
          imagePullPolicy: "IfNotPresent",
          workingDir: APP_DIR,
          command: ["node"],
          args: launchArgs(o, t),
          env: containerEnv(o, t),
          ports,
          resources: containerResources(o),
          volumeMounts: mounts,
        },
      ],
      volumes: [
        { name: "config", configMap: { name: t.configMap } },
        runVolume(o),
        { name: "shm", emptyDir: { medium: "Memory", sizeLimit: o.shmSize } },
        ...(o.tlsSecret !== undefined ? [tlsVolume(o.tlsSecret)] : []),
      ],
    },
  };
}
