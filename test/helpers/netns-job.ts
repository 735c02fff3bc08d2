/**
 * Runs a generated Kubernetes job on a simulated cluster (helpers/netns.ts): renders the manifests for the
 * config, then starts, in node i's namespace, exactly the command pod i would run (helpers/netns-pod.ts). The
 * run directory is one local directory shared by all nodes, standing in for the PVC.
 */
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { renderManifests } from "../../launch/k8s/manifests";
import { resolveK8sOptions, type K8sOptions } from "../../launch/k8s/options";
import { topologyOf } from "../../launch/k8s/topology";
import { repoRoot } from "../../shared/paths";
import { NetnsCluster } from "./netns";
import { parseManifests, podProcess } from "./netns-pod";

/** What to run. */
export interface SimJobSpec {
  /** Run config text (written to <root>/<configName>). */
  configText: string;
  configName: string;
  nodes: number;
  workersPerNode: number;
  /** Egress cap per veth end (tc tbf rate, e.g. "1gbit"); none when undefined. */
  rate?: string;
  /** Scratch directory (created). */
  root: string;
  timeoutMs: number;
  /** Pin node i to these CPUs (taskset -c), so simulated machines do not share cores; unpinned when undefined. */
  cpus?: string[];
}

/** Outcome of a simulated job. */
export interface SimJobResult {
  options: K8sOptions;
  /** The run directory on the shared "PVC". */
  runDir: string;
  /** Exit code of each pod's launch (index order); null when killed on timeout. */
  codes: (number | null)[];
  /** launch output of each pod. */
  podLogs: string[];
}

/** Renders the manifests and runs every pod's command in its namespace; the highest index starts first. */
export async function runSimulatedJob(spec: SimJobSpec): Promise<SimJobResult> {
  fs.mkdirSync(spec.root, { recursive: true });
  const configPath = path.join(spec.root, spec.configName);
  fs.writeFileSync(configPath, spec.configText);
  const options = resolveK8sOptions({
    config: configPath, configText: spec.configText, configName: path.parse(spec.configName).name, image: "ringtrain:cpu",
    nodes: spec.nodes, workersPerNode: spec.workersPerNode, pvc: "runs",
  });
  const docs = parseManifests(renderManifests(options));
  const t = topologyOf(options);
  const token = crypto.randomBytes(24).toString("hex");
  // The names Kubernetes DNS gives pod i: short (search path) and fully qualified, plus its own hostname.
  const cluster = new NetnsCluster(spec.nodes, (i) => [`${t.podDnsName(i)}.${options.namespace}.svc.cluster.local`, t.podDnsName(i), t.hostname(i)], spec.rate);
  try {
    const podLogs = cluster.nodes.map((_, i) => path.join(spec.root, `pod-${i}.log`));
    const exits: Promise<number | null>[] = [];
    for (let i = spec.nodes - 1; i >= 0; i--) {
      const { argv, env } = podProcess(docs, { index: i, podIp: cluster.nodes[i].ip, secrets: { [t.secret]: { token } }, root: spec.root });
      const pinned = spec.cpus ? ["taskset", "-c", spec.cpus[i], ...argv] : argv;
      const child = cluster.spawn(i, pinned, { env: { PATH: process.env.PATH, ...env }, cwd: repoRoot(), log: podLogs[i] });
      exits[i] = new Promise((resolve) => child.once("exit", (code) => resolve(code)));
    }
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<"timeout">((resolve) => (timer = setTimeout(() => resolve("timeout"), spec.timeoutMs)));
    const all = await Promise.race([Promise.all(exits), timeout]);
    clearTimeout(timer);
    if (all === "timeout") cluster.destroy();
    const codes = await Promise.all(exits);
    return { options, runDir: path.join(spec.root, "runs", options.name), codes, podLogs: podLogs.map((f) => (fs.existsSync(f) ? fs.readFileSync(f, "utf8") : "")) };
  } finally {
    cluster.destroy();
  }
}
