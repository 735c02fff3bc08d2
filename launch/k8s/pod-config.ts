import * as fs from "node:fs";
import * as path from "node:path";
import { parse as parseYaml, stringify as stringifyYaml } from "yaml";
import { applyConfigOverrides, ConfigError, readConfigObject, validateRunConfig } from "../../shared/config/load";
import type { RunConfig } from "../../shared/config/schema";
import { podPathProblems } from "./pod-paths";
import { podTlsFiles, TLS_MOUNT, TLS_SECRET_KEYS } from "./tls";

/** The run config as the pods will read it from the ConfigMap. */
export interface PodConfig {
  /** The ConfigMap's text: the file as written, or (after --set or the TLS rewrite) the resulting YAML. */
  text: string;
  /** `text`, validated against the schema (defaults filled in; paths as written). */
  config: RunConfig;
  /** Files the pods read that the image or a volume must provide (printed as warnings). */
  warnings: string[];
}

/** What changes the config on its way into the ConfigMap. */
export interface PodConfigChanges {
  /** `--set field.path=value` overrides, applied as `launch` applies them. */
  set?: string[];
  /** `--tls-secret NAME`: communication.tls then points at the Secret's files (TLS_MOUNT). */
  tlsSecret?: string;
}

/**
 * Reads the run config, applies `--set`, checks it against the schema (ConfigError naming the file and field) and
 * makes it fit the pods: with `--tls-secret`, communication.tls is turned on with the mounted Secret's files;
 * with TLS in the config but no `--tls-secret`, the pods could not read the files: a ConfigError saying so. Files
 * are not looked for on this machine (the pods have their own file system); relative paths are refused
 * (podPathProblems). The text that comes back is validated as the pods will parse it.
 */
export function resolvePodConfig(file: string, changes: PodConfigChanges = {}): PodConfig {
  if (!fs.existsSync(file)) throw new ConfigError(`config file '${file}' does not exist`);
  if (fs.statSync(file).isDirectory()) throw new ConfigError(`config file '${file}' is a directory; give the YAML file`);
  const raw = readConfigObject(file);
  const set = changes.set ?? [];
  applyConfigOverrides(raw, { set }, file);
  const asked = validateRunConfig(raw, file);
  const notes: string[] = [];
  if (set.length > 0) notes.push(`with ${set.map((s) => `--set ${s}`).join(" ")}`);
  if (changes.tlsSecret !== undefined) {
    // validateRunConfig accepted `communication` as a mapping (or it is absent).
    const communication = (raw.communication ??= {}) as Record<string, unknown>;
    communication.tls = podTlsFiles();
    notes.push(`communication.tls: the files of Secret ${changes.tlsSecret} mounted at ${TLS_MOUNT}`);
  } else if (asked.communication.tls !== undefined) {
    const keys = Object.entries(TLS_SECRET_KEYS).map(([field, key]) => `${key} (${field})`).join(", ");
    throw new ConfigError(
      `${file}: field communication.tls: the pods cannot read this machine's files: put them in a Secret with the keys ${keys} ` +
        `and pass --tls-secret NAME (the pods mount it at ${TLS_MOUNT} and their config points there)`,
    );
  }
  const warnings = podPathProblems(file, raw);
  const original = fs.readFileSync(file, "utf8");
  // Comment lines stay comments: a line break inside a --set value must not start YAML of its own.
  const comment = (line: string): string => `# ${line.replace(/[\r\n]+/g, " ")}\n`;
  const text = notes.length === 0 ? original : [`${path.basename(file)}, as the pods run it (launch k8s)`, ...notes].map(comment).join("") + stringifyYaml(raw, { lineWidth: 0 });
  const config = validateRunConfig(parseYaml(text), `${file} (as the pods read it)`);
  return { text, config, warnings };
}
