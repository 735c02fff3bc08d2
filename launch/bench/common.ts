/**
 * Small helpers shared by the `launch bench` subcommands: list parsing with clear errors, medians, JSON output.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { ConfigError } from "../../shared/config/load";
import type { Rng } from "../../shared/rng";
import type { Batch } from "../../shared/train/batch";
import { makeDirs } from "../../shared/io/make-dirs";
import { typedValue } from "../input-error";

/** Median of a non-empty list (mean of the two middle values for an even count); NaN for an empty list. */
export function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Median of the finite values (NaN and infinities, e.g. a field a record lacks, are left out). */
export function medianFinite(xs: readonly number[]): number {
  return median(xs.filter(Number.isFinite));
}

/**
 * A synthetic MLM batch of `batchSize` x `seqLen` tokens: ids uniform in [firstId, vocab), exactly
 * round(maskFraction * tokens) positions replaced by maskId, whose labels are the original ids; no padding.
 */
export function syntheticMlmBatch(
  rng: Rng, batchSize: number, seqLen: number, vocab: number, ids: { firstId: number; maskId: number }, maskFraction = 0.15,
): Batch {
  const n = batchSize * seqLen;
  const inputIds = new Int32Array(n);
  for (let i = 0; i < n; i++) inputIds[i] = ids.firstId + rng.int(vocab - ids.firstId);
  const mlmLabels = new Int32Array(n).fill(-100);
  const order = Int32Array.from({ length: n }, (_, i) => i);
  rng.shuffle(order);
  for (const p of order.subarray(0, Math.round(maskFraction * n))) {
    mlmLabels[p] = inputIds[p];
    inputIds[p] = ids.maskId;
  }
  return { batchSize, seqLen, inputIds, tokenTypeIds: new Int32Array(n), attentionMask: new Int32Array(n).fill(1), mlmLabels };
}

/**
 * Parses a comma-separated list of integers (`--workers 1,2,4`); throws ConfigError naming the flag when an entry
 * is not an integer of at least `min`, or when the list is empty.
 */
export function parseIntList(value: string | number | undefined, flagName: string, min: number): number[] {
  const text = String(value ?? "").trim();
  if (text === "") throw new ConfigError(`--${flagName}: expected a comma-separated list of integers, got nothing`);
  return text.split(",").map((part) => {
    const s = part.trim();
    const n = Number(s);
    if (s === "" || !Number.isInteger(n) || n < min) {
      throw new ConfigError(`--${flagName}: '${s}' is not an integer >= ${min} (in '${text}')`);
    }
    return n;
  });
}

/** The largest message the all-reduce benchmark can hold: 2^32 float32 elements (16 GiB), V8's longest typed array. */
export const MAX_MESSAGE_BYTES = 4 * 2 ** 32;

/**
 * One byte size such as `4096`, `64KiB`, `4MiB`, `1GiB` (also K/M/G and KB/MB/GB, as powers of 1024,
 * case-insensitive): a positive multiple of 4 (float32 elements) of at most MAX_MESSAGE_BYTES. ConfigError naming
 * the flag otherwise.
 */
export function parseSize(value: string | number, flagName: string): number {
  const text = String(value).trim();
  const m = /^(\d+)\s*(b|k|kb|kib|m|mb|mib|g|gb|gib)?$/i.exec(text);
  if (!m) throw new ConfigError(`--${flagName}: '${text}' is not a byte size (examples: 4096, 64KiB, 4MiB)`);
  const unit = (m[2] ?? "b").toLowerCase()[0];
  const bytes = Number(m[1]) * (unit === "k" ? 1024 : unit === "m" ? 1 << 20 : unit === "g" ? 1 << 30 : 1);
  if (bytes < 4 || bytes % 4 !== 0) throw new ConfigError(`--${flagName}: ${text} must be a positive multiple of 4 bytes (float32 elements)`);
  if (bytes > MAX_MESSAGE_BYTES) throw new ConfigError(`--${flagName}: ${text} exceeds the largest message, 16 GiB (2^32 float32 elements)`);
  return bytes;
}

/** A comma-separated list of byte sizes, each as `parseSize` reads it. */
export function parseSizeList(value: string | number | undefined, flagName: string): number[] {
  const text = String(value ?? "").trim();
  if (text === "") throw new ConfigError(`--${flagName}: expected a comma-separated list of byte sizes, got nothing`);
  return text.split(",").map((part) => parseSize(part, flagName));
}

/** Throws ConfigError unless `value` is an integer >= min. */
export function checkInt(value: number, flagName: string, min: number): number {
  if (!Number.isInteger(value) || value < min) throw new ConfigError(`--${flagName}: ${Number.isNaN(value) ? typedValue(flagName) : value} is not an integer >= ${min}`);
  return value;
}



/** Writes `data` as indented JSON to `file` (creating its folder). */
export function writeJsonFile(file: string, data: unknown): void {
  makeDirs(path.dirname(path.resolve(file)));
  fs.writeFileSync(file, JSON.stringify(data, null, 1) + "\n");
}

/** The error code of a failed fs call, for a one-line message. */
function codeOf(err: unknown): string {
  return (err as NodeJS.ErrnoException).code ?? String(err);
}

/**
 * Checks that an output file can be written before a long benchmark runs: its folder exists or can be created and
 * is writable, and the name is not a folder. Throws ConfigError naming the flag (exit 2) if not.
 */
export function checkWritable(file: string | undefined, flagName: string): void {
  if (file === undefined) return;
  if (file.trim() === "") throw new ConfigError(`--${flagName}: needs a file name`);
  const abs = path.resolve(file);
  let existing: fs.Stats | undefined;
  try {
    existing = fs.statSync(abs);
  } catch {
    existing = undefined;
  }
  if (existing?.isDirectory()) throw new ConfigError(`--${flagName}: ${file} is a directory; name a file in it`);
  const dir = path.dirname(abs);
  try {
    makeDirs(dir);
    fs.accessSync(dir, fs.constants.W_OK);
  } catch (err) {
    throw new ConfigError(`--${flagName}: cannot write into ${dir} (${codeOf(err)})`);
  }
  if (existing !== undefined) {
    try {
      fs.accessSync(abs, fs.constants.W_OK);
    } catch (err) {
      throw new ConfigError(`--${flagName}: cannot write ${file} (${codeOf(err)})`);
    }
  }
}

/** Checks that `dir` is a folder that exists or can be created, and is writable; ConfigError naming the flag if not. */
export function checkWritableDir(dir: string | undefined, flagName: string): void {
  if (dir === undefined) return;
  if (dir.trim() === "") throw new ConfigError(`--${flagName}: needs a folder name`);
  try {
    makeDirs(dir);
    fs.accessSync(dir, fs.constants.W_OK);
  } catch (err) {
    const code = codeOf(err);
    throw new ConfigError(code === "ENOTDIR" ? `--${flagName}: ${dir} is not a folder (a file is in the way)` : `--${flagName}: cannot write into ${dir} (${code})`);
  }
}

/** `1 KiB`, `4 MiB`, `512 B`. */
export function fmtBytes(b: number): string {
  return b >= 1 << 30 ? `${b / (1 << 30)} GiB` : b >= 1 << 20 ? `${b / (1 << 20)} MiB` : b >= 1024 ? `${b / 1024} KiB` : `${b} B`;
}

/** Right-aligned fixed-width table: a header row and data rows of strings. */
export function formatTable(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]): string => cells.map((c, i) => c.padStart(widths[i])).join("  ");
  return [line(header), ...rows.map(line)].join("\n") + "\n";
}

