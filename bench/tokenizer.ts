/**
 * Tokenizer benchmark on the Brown corpus: word counting (calling thread vs worker threads), WordPiece
 * training time, encoding speed (tokens/s, cold and warm word cache), packing and MLM masking speed.
 * Usage: node dist/bench/tokenizer.js [vocabSize=30000] [threads=2]
 */
import * as os from "node:os";
import { loadBrown } from "../shared/data/brown";
import { makeMlmBatch } from "../shared/data/masking";
import { packDocuments } from "../shared/data/pack";
import { BertTokenizer } from "../shared/tokenizer/bert-tokenizer";
import { trainWordPiece } from "../shared/tokenizer/trainer";
import { countWords } from "../shared/tokenizer/word-count";

function seconds(start: bigint): number {
  return Number(process.hrtime.bigint() - start) / 1e9;
}

async function main(): Promise<void> {
  const vocabSize = Number(process.argv[2] ?? 30000);
  const threads = Number(process.argv[3] ?? Math.min(4, os.availableParallelism()));
  if (!Number.isInteger(vocabSize) || !Number.isInteger(threads) || threads < 1) {
    throw new Error("usage: node dist/bench/tokenizer.js [vocabSize] [threads]");
  }
  let t = process.hrtime.bigint();
  const docs = loadBrown();
  const texts = docs.map((d) => d.text);
  const chars = texts.reduce((n, s) => n + s.length, 0);
  console.log(`load Brown: ${docs.length} texts, ${(chars / 1e6).toFixed(2)} M chars in ${seconds(t).toFixed(2)} s`);

  t = process.hrtime.bigint();
  const counts1 = await countWords(texts, { threads: 1 });
  const count1 = seconds(t);
  t = process.hrtime.bigint();
  const countsN = await countWords(texts, { threads, parallelThreshold: 0 });
  const countN = seconds(t);
  if (countsN.size !== counts1.size) throw new Error("thread and in-thread counts differ");
  const words = [...counts1.values()].reduce((a, b) => a + b, 0);
  console.log(`count words: ${words} words, ${counts1.size} distinct; 1 thread ${count1.toFixed(2)} s, ${threads} worker threads ${countN.toFixed(2)} s`);

  t = process.hrtime.bigint();
  const { vocab, merges } = trainWordPiece(counts1, { vocabSize });
  const train = seconds(t);
  console.log(`train WordPiece: vocab ${vocab.size} (${merges} merges) in ${train.toFixed(2)} s; total with counting ${(train + count1).toFixed(2)} s`);

  const tok = new BertTokenizer(vocab);
  for (const pass of ["cold", "warm"]) {
    t = process.hrtime.bigint();
    let n = 0;
    for (const s of texts) n += tok.tokenizeToIds(s).length;
    const dt = seconds(t);
    console.log(`encode (${pass} word cache): ${n} tokens in ${dt.toFixed(2)} s = ${(n / dt / 1e6).toFixed(2)} M tokens/s, ${(chars / dt / 1e6).toFixed(1)} M chars/s`);
  }

  t = process.hrtime.bigint();
  const packed = packDocuments(docs, tok, 128);
  console.log(`pack: ${packed.count} sequences of 128 in ${seconds(t).toFixed(2)} s`);
  const sp = tok.specialIds;
  const opts = { seed: 1, epoch: 0, vocabSize: vocab.size, specialIds: [sp.pad, sp.unk, sp.cls, sp.sep, sp.mask], maskId: sp.mask, padId: sp.pad };
  t = process.hrtime.bigint();
  let batches = 0;
  for (let s = 0; s + 32 <= packed.count; s += 32, batches++) makeMlmBatch(packed, Array.from({ length: 32 }, (_, i) => s + i), opts);
  const dt = seconds(t);
  console.log(`MLM masking: ${batches} batches of 32x128 in ${dt.toFixed(2)} s = ${((batches * 32) / dt).toFixed(0)} sequences/s`);
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
