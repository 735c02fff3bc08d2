import * as os from "node:os";
import * as path from "node:path";
import Piscina from "piscina";
import type { NormalizerOptions } from "./basic";
import countChunk, { type CountResult, type CountTask } from "./count-worker";

/** Word -> number of occurrences, words as the BasicTokenizer emits them. */
export type WordCounts = Map<string, number>;

/** Options of countWords. */
export interface CountOptions extends NormalizerOptions {
  /** Worker threads; default min(4, cores - 1), leaving a core to the caller. 1 counts on the calling thread. */
  threads?: number;
  /** Below this many characters in all, threads are not worth their start-up; default 2,000,000. */
  parallelThreshold?: number;
}

/**
 * Counts the words of many texts, in piscina worker threads when the input is large enough for the
 * parallelism to pay for the threads' start-up and the result copies.
 */
export async function countWords(texts: readonly string[], opts: CountOptions = {}): Promise<WordCounts> {
  const normalizer: NormalizerOptions = { lowerCase: opts.lowerCase, stripAccents: opts.stripAccents, splitCjk: opts.splitCjk };
  const threads = Math.max(1, opts.threads ?? Math.min(4, os.availableParallelism() - 1));
  const totalChars = texts.reduce((n, t) => n + t.length, 0);
  if (threads === 1 || totalChars < (opts.parallelThreshold ?? 2_000_000)) {
    return merge([countChunk({ texts: [...texts], normalizer })]);
  }
  // Several chunks per thread so one slow chunk does not leave the other threads idle at the end.
  const chunks = chunkByChars(texts, threads * 4);
  const pool = new Piscina<CountTask, CountResult>({
    filename: path.join(__dirname, "count-worker.js"),
    maxThreads: threads,
    minThreads: threads,
  });
  try {
    return merge(await Promise.all(chunks.map((c) => pool.run({ texts: c, normalizer }))));
  } finally {
    await pool.destroy();
  }
}

function chunkByChars(texts: readonly string[], parts: number): string[][] {
  const total = texts.reduce((n, t) => n + t.length, 0);
  const target = Math.ceil(total / parts);
  const chunks: string[][] = [];
  let cur: string[] = [];
  let size = 0;
  for (const t of texts) {
    cur.push(t);
    size += t.length;
    if (size >= target) {
      chunks.push(cur);
      cur = [];
      size = 0;
    }
  }
  if (cur.length > 0) chunks.push(cur);
  return chunks;
}

function merge(results: CountResult[]): WordCounts {
  const counts: WordCounts = new Map();
  for (const r of results) {
    for (let i = 0; i < r.words.length; i++) counts.set(r.words[i], (counts.get(r.words[i]) ?? 0) + r.counts[i]);
  }
  return counts;
}
