/**
 * What a node's own run config says differently from node 0's. Every node is started with a config, but the job
 * runs node 0's (the coordinator sends it at join); a node started with another model, batch or schedule would
 * otherwise train node 0's settings without a word.
 */

/**
 * Fields that may differ between nodes because each node's own launch uses its own value: the run directory it
 * writes its ranks' logs to, and the TLS files its workers load. Every other path (data, vocabulary, init_from,
 * base model, cache) is read by the workers of every node with node 0's value, so it must name the same place on
 * every machine, and a difference is reported.
 */
export const NODE_LOCAL_FIELDS: readonly string[] = [
  "output_dir", "communication.tls.ca_file", "communication.tls.cert_file", "communication.tls.key_file",
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
