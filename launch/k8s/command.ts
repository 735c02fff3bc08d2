import * as fs from "node:fs";
import * as path from "node:path";
import { parse as parseYaml } from "yaml";
import { ConfigError, loadRunConfig, validateForWorld } from "../../shared/config/load";
import { renderManifests } from "./manifests";
import { MOUNTS, resolveK8sOptions, type K8sFlags } from "./options";

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
  if (fs.statSync(flags.config).isDirectory()) throw new ConfigError(`config file '${flags.config}' is a directory; give the YAML file`);
  const configText = fs.readFileSync(flags.config, "utf8");
  const cfg = loadRunConfig(flags.config);
  const opts = resolveK8sOptions({ ...flags, configText, configName: cfg.name });
  validateForWorld(cfg, opts.nodes * opts.workersPerNode, flags.config);
  for (const w of podPathProblems(flags.config, configText)) process.stderr.write(`launch k8s: warning: ${w}\n`);
  const yaml = renderManifests(opts);
  if (flags.output !== undefined) {
    try {
      fs.writeFileSync(flags.output, yaml);
    } catch (e) {
      throw new ConfigError(`--output ${flags.output}: ${(e as Error).message}`);
    }
  } else process.stdout.write(yaml);
  return yaml;
}

/**
 * The pods see only the image, the ConfigMap (the config file alone, at /config) and the run volume. A path that
 * the config resolves against its own folder (data.paths, tokenizer.vocab_file) cannot exist there when relative:
 * an error. Any other file path must be provided by the image or a volume: a warning naming it.
 */
export function podPathProblems(source: string, configText: string): string[] {
  const raw = (parseYaml(configText) ?? {}) as Record<string, Record<string, unknown> | undefined>;
  const str = (v: unknown): string | undefined => (typeof v === "string" ? v : undefined);
  const data = raw.data ?? {};
  const tls = (raw.communication?.tls ?? {}) as Record<string, unknown>;
  // [field, value, resolved against the config's folder (load.ts)]
  const fields: [string, string | undefined, boolean][] = [
    ...(Array.isArray(data.paths) ? data.paths : []).map((p: unknown, i: number): [string, string | undefined, boolean] => [`data.paths[${i}]`, str(p), true]),
    ["tokenizer.vocab_file", str(raw.tokenizer?.vocab_file), true],
    ["model.init_from", str(raw.model?.init_from), false],
    ["finetune.base_model", str(raw.finetune?.base_model), false],
    ["communication.tls.ca_file", str(tls.ca_file), true],
    ["communication.tls.cert_file", str(tls.cert_file), true],
    ["communication.tls.key_file", str(tls.key_file), true],
  ];
  const out: string[] = [];
  for (const [field, value, besideConfig] of fields) {
    if (value === undefined) continue;
    if (besideConfig && !path.isAbsolute(value)) {
      throw new ConfigError(`${source}: field ${field}: '${value}' is relative to the config's folder, which in the pods is the ConfigMap mount ${MOUNTS.config} holding only the config: put the file in the image or a volume and give its absolute path`);
    }
    out.push(`${source}: field ${field}: the pods read '${value}' inside the container: the image or a volume (--pvc, --host-path) must provide it`);
  }
  return out;
}
