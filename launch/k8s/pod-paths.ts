import * as path from "node:path";
import { ConfigError } from "../../shared/config/load";
import { MOUNTS } from "./options";

/**
 * The pods see only the image, the ConfigMap (the config file alone, at /config), the run volume and (with
 * --tls-secret) the TLS Secret. A path that the config resolves against its own folder (data.paths,
 * data.validation_paths, data.test_paths, tokenizer.vocab_file) cannot exist there when relative: an error. Any
 * other file path must be provided by the image or a volume: a warning naming it. `raw` is the config as the pods
 * read it (after --set); communication.tls is left to the TLS checks (its files come from the Secret).
 */
export function podPathProblems(source: string, raw: Record<string, unknown>): string[] {
  const section = (v: unknown): Record<string, unknown> => (v !== null && typeof v === "object" && !Array.isArray(v) ? (v as Record<string, unknown>) : {});
  const str = (v: unknown): string | undefined => (typeof v === "string" ? v : undefined);
  const data = section(raw.data);
  const list = (field: string): [string, string | undefined, boolean][] => {
    const v = data[field];
    return (Array.isArray(v) ? v : []).map((p: unknown, i: number): [string, string | undefined, boolean] => [`data.${field}[${i}]`, str(p), true]);
  };
  // [field, value, resolved against the config's folder (shared/config/load.ts)]
  const fields: [string, string | undefined, boolean][] = [
    ...list("paths"),
    ...list("validation_paths"),
    ...list("test_paths"),
    ["tokenizer.vocab_file", str(section(raw.tokenizer).vocab_file), true],
    ["model.init_from", str(section(raw.model).init_from), false],
    ["finetune.base_model", str(section(raw.finetune).base_model), false],
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
