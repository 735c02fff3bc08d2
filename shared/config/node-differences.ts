/**
 * What a node's own run config says differently from node 0's. Every node is started with a config, but the job
 * runs node 0's (the coordinator sends it at join); a node started with another model, batch or schedule would
 * otherwise train node 0's settings without a word.
 */

/**
 * Fields that may differ between nodes: where each node keeps its own files (paths are mount points, which differ
 * between machines) and node-local logging. The content behind the paths is node 0's: the coordinator sends the
 * vocabulary, the data plan and the checkpoint to resume from.
 */
export const NODE_LOCAL_FIELDS: readonly string[] = [
  "output_dir", "training.timeline",
  "data.cache_dir", "data.paths", "data.validation_paths", "data.test_paths",
  "tokenizer.vocab_file", "model.init_from", "finetune.base_model", "elastic.snapshot_dir",
  "communication.tls.ca_file", "communication.tls.cert_file", "communication.tls.key_file",
];

/** At most this many differences are listed; the rest are counted. */
const MAX_LISTED = 6;

/**
 * The fields whose values differ between this node's config (`here`) and node 0's, as
 * `field: <value here> here, <value on node 0> on node 0` (JSON values), in field order, skipping NODE_LOCAL_FIELDS.
 * A field set on one side only counts as a difference (`unset`).
 */
export function configDifferences(here: unknown, node0: unknown): string[] {
  const out: string[] = [];
  walk(here, node0, "", out);
  if (out.length <= MAX_LISTED) return out;
  return [...out.slice(0, MAX_LISTED), `and ${out.length - MAX_LISTED} more field(s)`];
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function walk(a: unknown, b: unknown, field: string, out: string[]): void {
  if (NODE_LOCAL_FIELDS.includes(field)) return;
  if (isRecord(a) && isRecord(b)) {
    const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])];
    for (const k of keys) walk(a[k], b[k], field === "" ? k : `${field}.${k}`, out);
    return;
  }
  const ja = JSON.stringify(a);
  const jb = JSON.stringify(b);
  if (ja !== jb) out.push(`${field}: ${ja ?? "unset"} here, ${jb ?? "unset"} on node 0`);
}
