import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import type { BertTokenizer } from "../tokenizer/bert-tokenizer";
import { corpusHash } from "./corpus";
import type { Document } from "./document";
import { packDocuments } from "./pack";
import { checkPacked, type PackedSequences } from "./packed";
import { splitDocuments, stratifiedSplit } from "./split";
import { makeConfiguredDirs } from "../io/make-dirs";

/** Options of preparePackedData. */
export interface PrepareOptions {
  tokenizer: BertTokenizer;
  maxSeqLen: number;
  validationFraction: number;
  seed: number;
  /** Split per class (label or genre) instead of over all documents. */
  stratifyBy?: "label" | "genre";
  /**
   * The validation documents themselves (data.validation_paths): when given, `docs` are all training documents and
   * no split is drawn (validationFraction and stratifyBy are not used).
   */
  validationDocs?: readonly Document[];
  /** Where packed data is cached; no caching when absent. */
  cacheDir?: string;
}

/** Packed train and validation data, and whether it came from the cache. */
export interface PreparedData {
  train: PackedSequences;
  validation: PackedSequences;
  fromCache: boolean;
  /** Cache key (also the file name stem). */
  key: string;
  /** The cache file, when caching. */
  file?: string;
}

const FORMAT = "ringtrain-packed-v1";
const MAGIC = Buffer.from("RTPACK01", "ascii");

/**
 * Splits documents (unless the validation documents are given), tokenises and packs both parts; with cacheDir, the result is stored under a key hashing
 * the corpus contents, the tokenizer (vocabulary and normaliser), maxSeqLen and the split (seed, fraction,
 * stratification), and a later call with the same key reads the file instead of tokenising again.
 */
export function preparePackedData(docs: readonly Document[], opts: PrepareOptions): PreparedData {
  const key = createHash("sha256")
    .update(
      JSON.stringify({
        format: FORMAT,
        corpus: corpusHash(docs),
        tokenizer: opts.tokenizer.identity,
        maxSeqLen: opts.maxSeqLen,
        seed: opts.seed,
        validationFraction: opts.validationFraction,
        stratifyBy: opts.stratifyBy ?? null,
        // Only present when given, so the keys of drawn splits (and their cache files) stay as they were.
        ...(opts.validationDocs === undefined ? {} : { validation: corpusHash(opts.validationDocs) }),
      }),
    )
    .digest("hex")
    .slice(0, 32);
  const file = opts.cacheDir === undefined ? undefined : path.join(opts.cacheDir, `packed-${key}.bin`);
  if (file !== undefined && fs.existsSync(file)) {
    const [train, validation] = readPackedFile(file, key);
    return { train, validation, fromCache: true, key, file };
  }
  const split =
    opts.validationDocs !== undefined
      ? { train: docs, validation: opts.validationDocs }
      : opts.stratifyBy === undefined
      ? splitDocuments(docs, opts)
      : stratifiedSplit(docs, { ...opts, by: opts.stratifyBy });
  const train = packDocuments(split.train, opts.tokenizer, opts.maxSeqLen);
  const validation = packDocuments(split.validation, opts.tokenizer, opts.maxSeqLen);
  if (file !== undefined) writePackedFile(file, key, [train, validation]);
  return { train, validation, fromCache: false, key, file };
}

interface SplitHeader {
  seqLen: number;
  count: number;
  wordStarts: boolean;
}

/**
 * Writes packed splits to one file: magic, header length, JSON header {key, splits}, then per split its
 * tokens, lengths and wordStarts bytes. Written to a temporary name and renamed, so that concurrent workers
 * on one machine never read a half-written file.
 */
export function writePackedFile(file: string, key: string, splits: readonly PackedSequences[]): void {
  makeConfiguredDirs("cache_dir", path.dirname(file));
  const header: { key: string; splits: SplitHeader[] } = {
    key,
    splits: splits.map((s) => ({ seqLen: s.seqLen, count: s.count, wordStarts: s.wordStarts !== undefined })),
  };
  const json = Buffer.from(JSON.stringify(header), "utf8");
  const len = Buffer.alloc(4);
  len.writeUInt32LE(json.length);
  const parts: Buffer[] = [MAGIC, len, json];
  for (const s of splits) {
    parts.push(bytesOf(s.tokens), bytesOf(s.lengths));
    if (s.wordStarts !== undefined) parts.push(bytesOf(s.wordStarts));
  }
  const tmp = `${file}.${process.pid}.${Date.now()}.tmp`;
  fs.writeFileSync(tmp, Buffer.concat(parts));
  fs.renameSync(tmp, file);
}

/** Reads a file written by writePackedFile; errors name the file and what is wrong with it. */
export function readPackedFile(file: string, expectedKey?: string): PackedSequences[] {
  const buf = fs.readFileSync(file);
  const bad = (why: string): Error => new Error(`cache file ${file}: ${why} (delete it to rebuild)`);
  if (buf.length < 12 || !buf.subarray(0, 8).equals(MAGIC)) throw bad("not a ringtrain packed-data file");
  const hlen = buf.readUInt32LE(8);
  if (12 + hlen > buf.length) throw bad("header runs past the end of the file");
  let header: { key?: unknown; splits?: unknown };
  try {
    header = JSON.parse(buf.subarray(12, 12 + hlen).toString("utf8")) as typeof header;
  } catch (e) {
    throw bad(`header is not JSON: ${(e as Error).message}`);
  }
  if (expectedKey !== undefined && header.key !== expectedKey) throw bad(`key ${String(header.key)} is not ${expectedKey}`);
  if (!Array.isArray(header.splits)) throw bad("header has no splits");
  let off = 12 + hlen;
  const take = (bytes: number): Buffer => {
    if (off + bytes > buf.length) throw bad("file is truncated");
    const b = buf.subarray(off, off + bytes);
    off += bytes;
    return b;
  };
  const out = (header.splits as SplitHeader[]).map((h, i) => {
    if (!Number.isInteger(h.seqLen) || !Number.isInteger(h.count) || h.count < 0) throw bad(`split ${i} header is invalid`);
    const cells = h.seqLen * h.count;
    const p: PackedSequences = {
      seqLen: h.seqLen,
      count: h.count,
      tokens: int32From(take(cells * 4)),
      lengths: int32From(take(h.count * 4)),
    };
    if (h.wordStarts) p.wordStarts = new Uint8Array(take(cells));
    checkPacked(p, `${file} split ${i}`);
    return p;
  });
  if (off !== buf.length) throw bad(`${buf.length - off} unexpected bytes at the end`);
  return out;
}

function bytesOf(a: Int32Array | Uint8Array): Buffer {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength);
}

function int32From(b: Buffer): Int32Array {
  // Copy into a fresh, aligned buffer; the file's offsets need not be 4-byte aligned.
  const out = new Int32Array(b.length / 4);
  new Uint8Array(out.buffer).set(b);
  return out;
}
