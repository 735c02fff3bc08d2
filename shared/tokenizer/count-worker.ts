import { basicTokenize, type NormalizerOptions } from "./basic";

/** A word-counting task: a chunk of texts and the normaliser options. */
export interface CountTask {
  texts: string[];
  normalizer: NormalizerOptions;
}

/** Result of one chunk: parallel arrays (cheaper to clone across threads than a Map). */
export interface CountResult {
  words: string[];
  counts: number[];
}

/** Piscina worker: counts BasicTokenizer words in a chunk of texts. */
export default function countChunk(task: CountTask): CountResult {
  const counts = new Map<string, number>();
  for (const text of task.texts) {
    for (const w of basicTokenize(text, task.normalizer)) counts.set(w, (counts.get(w) ?? 0) + 1);
  }
  return { words: [...counts.keys()], counts: [...counts.values()] };
}
