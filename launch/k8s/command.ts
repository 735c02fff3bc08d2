import * as fs from "node:fs";
import { ConfigError, loadRunConfig, validateForWorld } from "../../shared/config/load";
import { renderManifests } from "./manifests";
import { resolveK8sOptions, type K8sFlags } from "./options";

/** Flags of `launch k8s` other than the config file (read here). */
export type K8sCommandFlags = Omit<K8sFlags, "configText" | "configName"> & {
  /** Write the YAML here instead of stdout. */
  output?: string;
};

/**
 * `launch k8s CONFIG.yaml ...`: checks the config for the requested world (the same checks `launch` does, so a
 * bad config fails here, not in the cluster) and writes the manifests.
 */
export function runK8sCommand(flags: K8sCommandFlags): string {
  if (!fs.existsSync(flags.config)) throw new ConfigError(`config file '${flags.config}' does not exist`);
  const configText = fs.readFileSync(flags.config, "utf8");
  const cfg = loadRunConfig(flags.config);
  const opts = resolveK8sOptions({ ...flags, configText, configName: cfg.name });
  validateForWorld(cfg, opts.nodes * opts.workersPerNode, flags.config);
  const yaml = renderManifests(opts);
  if (flags.output !== undefined) fs.writeFileSync(flags.output, yaml);
  else process.stdout.write(yaml);
  return yaml;
}
