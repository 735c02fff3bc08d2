/**
 * Fusion-bucket planning: many named gradient tensors packed into buffers of about `bucketBytes` each.
 *
 * The order is the order of the tensor list (the model's parameter registration order), which is identical on
 * every rank; a tensor larger than a bucket gets a bucket of its own and is never split. The layout hash covers
 * everything that must agree between ranks, so a mismatch is detected before any data is summed.
 */
import { createHash } from "node:crypto";

/** Default fusion buffer size, as in PyTorch DDP. */
export const DEFAULT_BUCKET_BYTES = 25 * 1024 * 1024;

/** The settings besides names and lengths that must agree between ranks, as hashed into the layout. */
export function layoutSalt(worldSize: number, op: number, wireDtype: number, chunkElems: number): string {
  return `N=${worldSize};op=${op};dtype=${wireDtype};chunk=${chunkElems}`;
}

/** One tensor's place in a bucket. */
export interface BucketEntry {
  /** Index in the caller's tensor list. */
  tensor: number;
  /** First element within the bucket. */
  offset: number;
  length: number;
}

/** A fusion bucket: consecutive tensors and their total element count. */
export interface Bucket {
  entries: BucketEntry[];
  elements: number;
}

/** The complete plan for one collective. */
export interface BucketPlan {
  buckets: Bucket[];
  totalElements: number;
  /** 16 hex digits; equal on two ranks iff names, lengths, bucketing and the settings in `salt` agree. */
  layoutHash: string;
}

/** Plans buckets for tensors (given as name and element count) and hashes the layout together with `salt`. */
export function planBuckets(tensors: readonly { name: string; length: number }[], bucketBytes: number, salt: string): BucketPlan {
  if (!Number.isInteger(bucketBytes) || bucketBytes < 4) throw new Error(`bucketBytes must be an integer >= 4, got ${bucketBytes}`);
  const cap = Math.floor(bucketBytes / 4);
  const buckets: Bucket[] = [];
  let cur: Bucket | null = null;
  let total = 0;
  const hash = createHash("sha256");
  hash.update(salt);
  for (let i = 0; i < tensors.length; i++) {
    const { name, length } = tensors[i];
    if (!Number.isInteger(length) || length < 0) throw new Error(`tensor ${i} ("${name}") has invalid length ${length}`);
    if (cur === null || (cur.elements > 0 && cur.elements + length > cap)) {
      cur = { entries: [], elements: 0 };
      buckets.push(cur);
      hash.update("|B");
    }
    cur.entries.push({ tensor: i, offset: cur.elements, length });
    cur.elements += length;
    total += length;
    hash.update(`|${name.length}:${name}:${length}`);
  }
  return { buckets, totalElements: total, layoutHash: hash.digest("hex").slice(0, 16) };
}
