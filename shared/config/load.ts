import * as fs from "node:fs";
import * as path from "node:path";
import { parseDocument } from "yaml";
import { z } from "zod";
import { adapterSchema, freezeSchema, loraSchema, prefixSchema, promptSchema, runConfigSchema, type RunConfig } from "./schema";

/** A configuration problem; the message names the file and the field. Launch exits with EXIT_CONFIG for these. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ConfigError";
  }
}

/** Overrides given on the command line, applied over the YAML before validation. */
export interface ConfigOverrides {
  maxSteps?: number;
  output?: string;
  backend?: string;
  seed?: number;
  /** Turns on the per-rank timeline (training.timeline). */
  timeline?: boolean;
  /** Free-form `a.b.c=value` overrides (value parsed as YAML). */
  set?: string[];
}

/**
 * Reads, overrides and validates a run config. Relative `data.paths` (and `validation_paths`, `test_paths`) and `tokenizer.vocab_file` are resolved
 * against the config file's folder; `output_dir` and `data.cache_dir` against the working directory.
 * Throws ConfigError naming the file and field on any problem, before anything is started.
 */
export function loadRunConfig(file: string, overrides: ConfigOverrides = {}): RunConfig {
  const obj = readConfigObject(file);
  applyConfigOverrides(obj, overrides, file);
  const cfg = validateRunConfig(obj, file);
  const baseDir = path.dirname(path.resolve(file));
  cfg.data.paths = cfg.data.paths.map((p) => path.resolve(baseDir, p));
  if (cfg.data.validation_paths !== undefined) cfg.data.validation_paths = cfg.data.validation_paths.map((p) => path.resolve(baseDir, p));
  if (cfg.data.test_paths !== undefined) cfg.data.test_paths = cfg.data.test_paths.map((p) => path.resolve(baseDir, p));
  if (cfg.tokenizer.vocab_file !== undefined) cfg.tokenizer.vocab_file = path.resolve(baseDir, cfg.tokenizer.vocab_file);
  checkFilesExist(cfg, file, baseDir);
  return cfg;
}

/**
 * Reads a config file as the plain object its YAML describes, before overrides and validation (no defaults filled
 * in, paths as written). Throws ConfigError naming the file (and line) when it cannot be read, is not valid YAML or
 * is not a mapping of fields.
 */
export function readConfigObject(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (err) {
    throw new ConfigError(`${file}: cannot read config file (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
  }
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    const e = doc.errors[0];
    const where = e.linePos ? `:${e.linePos[0].line}:${e.linePos[0].col}` : "";
    throw new ConfigError(`${file}${where}: invalid YAML: ${e.message.split("\n")[0]}`);
  }
  const raw: unknown = doc.toJS();
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) {
    throw new ConfigError(`${file}: the config must be a YAML mapping of fields (got ${raw === null ? "nothing" : Array.isArray(raw) ? "a list" : typeof raw})`);
  }
  return raw as Record<string, unknown>;
}

/** Validates a plain object against the schema; `source` names where it came from in error messages. */
export function validateRunConfig(raw: unknown, source: string): RunConfig {
  const result = runConfigSchema.safeParse(raw);
  if (!result.success) throw new ConfigError(formatIssues(result.error, source));
  return result.data;
}

/**
 * Settings that are valid but probably not what was meant (launch prints them as warnings and goes on), e.g. a
 * warmup longer than the run after `--max-steps` shortened it: as in HF, the learning rate then never reaches its peak.
 */
export function configWarnings(cfg: RunConfig, source: string): string[] {
  const out: string[] = [];
  const { warmup_steps: warmup } = cfg.schedule;
  const steps = cfg.training.max_steps;
  if (warmup > steps) {
    out.push(`${source}: schedule.warmup_steps ${warmup} exceeds training.max_steps ${steps}: the learning rate rises for the whole run; the last update uses ${(((steps - 1) / warmup) * 100).toFixed(0)}% of optimizer.lr`);
  }
  // Settings of another fine-tuning method than the one chosen do nothing: most likely `method` was forgotten.
  const f = cfg.finetune;
  if (f !== undefined && f.pooling === "mean") {
    out.push(`${source}: finetune.pooling mean: HF's BertForSequenceClassification pools [CLS], so it would compute other logits from the saved head; use launch predict (task.json / adapter_config.json record the pooling)`);
  }
  if (f !== undefined) {
    const sections = { lora: loraSchema, adapter: adapterSchema, prefix: prefixSchema, prompt: promptSchema, freeze: freezeSchema } as const;
    for (const [name, schema] of Object.entries(sections)) {
      if (name === f.method) continue;
      if (JSON.stringify(f[name as keyof typeof sections]) !== JSON.stringify(schema.parse({}))) {
        out.push(`${source}: finetune.${name} is set but finetune.method is ${f.method}: those settings are ignored (set finetune.method: ${name} to use them)`);
      }
    }
  }
  return out;
}

/** Checks the batch layout for a given world size (known only at launch time). */
export function validateForWorld(cfg: RunConfig, worldSize: number, source: string): void {
  const { global_batch_size: global, micro_batch_size: micro } = cfg.batch;
  if (cfg.batch.balance === "adaptive") {
    // Shares vary per step; each is cut into micro-batches of at most micro_batch_size.
    if (global < worldSize) throw new ConfigError(`${source}: field batch.global_batch_size: ${global} gives some of the ${worldSize} workers no sequence; use at least ${worldSize}`);
    return;
  }
  if (global % (micro * worldSize) !== 0) {
    throw new ConfigError(
      `${source}: field batch.global_batch_size: ${global} is not divisible by micro_batch_size (${micro}) x workers (${worldSize}); ` +
        `choose a global batch that is a multiple of ${micro * worldSize}`,
    );
  }
}

/** Gradient-accumulation micro-steps per optimizer step for this world size (of an even share, rounded up). */
export function accumulationSteps(cfg: RunConfig, worldSize: number): number {
  return Math.ceil(cfg.batch.global_batch_size / (cfg.batch.micro_batch_size * worldSize));
}

/**
 * Applies command-line overrides to a config object read from `source` (in place, before validation): the named
 * flags (`--max-steps`, `--output`, `--backend`, `--seed`, `--timeline`) first, then each `--set a.b.c=value` in
 * order, its value parsed as YAML (`--set optimizer.lr=1e-3` is a number, `--set data.paths=[a,b]` a list).
 * Missing mappings on the way are created. Throws ConfigError naming the assignment when it has no `=` or a
 * key on its path is not a mapping. Used by `launch` (train) and `launch k8s` alike.
 */
export function applyConfigOverrides(obj: Record<string, unknown>, o: ConfigOverrides, source: string): void {
  const setPath = (dotted: string, value: unknown): void => {
    const keys = dotted.split(".");
    // Own keys only: `__proto__` would reach Object.prototype instead of a config field.
    if (keys.includes("__proto__")) throw new ConfigError(`${source}: cannot override '${dotted}': '__proto__' is not a config field`);
    let node: Record<string, unknown> = obj;
    for (const k of keys.slice(0, -1)) {
      const next = Object.hasOwn(node, k) ? node[k] : undefined;
      if (next === undefined) node[k] = {};
      else if (next === null || typeof next !== "object" || Array.isArray(next)) {
        throw new ConfigError(`${source}: cannot override '${dotted}': '${k}' is not a mapping`);
      }
      node = node[k] as Record<string, unknown>;
    }
    node[keys[keys.length - 1]] = value;
  };
  if (o.maxSteps !== undefined) setPath("training.max_steps", o.maxSteps);
  if (o.output !== undefined) setPath("output_dir", o.output);
  if (o.backend !== undefined) setPath("backend", o.backend);
  if (o.seed !== undefined) setPath("seed", o.seed);
  if (o.timeline !== undefined) setPath("training.timeline", o.timeline);
  for (const assignment of o.set ?? []) {
    const eq = assignment.indexOf("=");
    if (eq <= 0) throw new ConfigError(`--set '${assignment}': expected field.path=value`);
    const value: unknown = parseDocument(assignment.slice(eq + 1)).toJS();
    setPath(assignment.slice(0, eq), value);
  }
}

function checkFilesExist(cfg: RunConfig, file: string, baseDir: string): void {
  for (const field of ["paths", "validation_paths", "test_paths"] as const) {
    (cfg.data[field] ?? []).forEach((p, i) => {
      if (!fs.existsSync(p)) throw new ConfigError(`${file}: field data.${field}[${i}]: file or folder not found: ${p}`);
    });
  }
  const tls = cfg.communication.tls;
  if (tls !== undefined) {
    for (const key of ["ca_file", "cert_file", "key_file"] as const) {
      tls[key] = path.resolve(baseDir, tls[key]);
      if (!fs.existsSync(tls[key])) throw new ConfigError(`${file}: field communication.tls.${key}: file not found: ${tls[key]}`);
    }
  }
  if (cfg.tokenizer.vocab_file !== undefined && !fs.existsSync(cfg.tokenizer.vocab_file)) {
    throw new ConfigError(`${file}: field tokenizer.vocab_file: file not found: ${cfg.tokenizer.vocab_file}`);
  }
}

function formatIssues(error: z.ZodError, source: string): string {
  const lines = error.issues.map((issue) => {
    const field = issue.path.map((p) => (typeof p === "number" ? `[${p}]` : String(p))).join(".").replace(/\.\[/g, "[");
    if (issue.code === "unrecognized_keys") {
      const where = field === "" ? "top level" : `field ${field}`;
      return `${where}: unknown field${issue.keys.length > 1 ? "s" : ""} ${issue.keys.map((k) => `'${k}'`).join(", ")}`;
    }
    if (issue.code === "invalid_type" && /received undefined/.test(issue.message)) {
      return `field ${field}: required field is missing (expected ${issue.expected})`;
    }
    return `field ${field || "(root)"}: ${issue.message}`;
  });
  return `${source}: invalid config:\n  ${lines.join("\n  ")}`;
}
