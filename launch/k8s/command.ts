import * as fs from "node:fs";
import { ConfigError, validateForWorld } from "../../shared/config/load";
import { renderManifests } from "./manifests";
import { resolveK8sOptions, type K8sFlags, type K8sOptions } from "./options";
import { resolvePodConfig } from "./pod-config";
import { k8sWarnings } from "./warnings";

/** Flags of `launch k8s` other than the config file (read here). */
export type K8sCommandFlags = Omit<K8sFlags, "configText" | "configName"> & {
  /** `--set field.path=value` overrides of the run config (repeatable), as `launch` takes them. */
  set?: string[];
  /** Write the YAML here instead of stdout. */
  output?: string;
};

/** What `launch k8s` produces: the YAML, the warnings it printed, and the options it was built from. */
export interface K8sOutput {
  yaml: string;
  warnings: string[];
  options: K8sOptions;
}

/**
 * The manifests of `launch k8s CONFIG.yaml ...`, without writing them: the config with its `--set` overrides and
 * TLS rewrite is checked for the requested world (the schema and batch checks `launch` makes, so a bad config
 * fails here, not in the cluster), then the flags; ConfigError on any problem.
 */
export function buildK8sOutput(flags: K8sCommandFlags): K8sOutput {
  const pod = resolvePodConfig(flags.config, { set: flags.set, tlsSecret: flags.tlsSecret });
  const options = resolveK8sOptions({ ...flags, configText: pod.text, configName: pod.config.name });
  validateForWorld(pod.config, options.nodes * options.workersPerNode, flags.config);
  const warnings = [...pod.warnings, ...k8sWarnings(options)];
  return { yaml: renderManifests(options, warnings), warnings, options };
}

/**
 * `launch k8s CONFIG.yaml ...`: writes the manifests to stdout (or `--output FILE`) and every warning to stderr,
 * so stdout stays pipeable to `kubectl apply -f -` (the YAML's header comment repeats the warnings).
 */
export function runK8sCommand(flags: K8sCommandFlags): string {
  const { yaml, warnings } = buildK8sOutput(flags);
  for (const w of warnings) process.stderr.write(`launch k8s: warning: ${w}\n`);
  if (flags.output !== undefined) {
    try {
      fs.writeFileSync(flags.output, yaml);
    } catch (e) {
      throw new ConfigError(`--output ${flags.output}: ${(e as Error).message}`);
    }
  } else process.stdout.write(yaml);
  return yaml;
}
