/**
 * Tokenizer benchmark on the Brown corpus: word counting (calling thread vs worker threads), WordPiece
 * training time, encoding speed (tokens/s, cold and warm word cache), packing and MLM masking speed.
 * Usage: node dist/bench/tokenizer.js [vocabSize=30000] [threads=min(4, cores)]
 */
import * as os from "node:os";
import yargs from "yargs";
import { hideBin } from "yargs/helpers";
import { loadBrown } from "../shared/data/brown";
import { makeMlmBatch } from "../shared/data/masking";
import { packDocuments } from "../shared/data/pack";
import { BertTokenizer } from "../shared/tokenizer/bert-tokenizer";
import { trainWordPiece } from "../shared/tokenizer/trainer";
import { countWords } from "../shared/tokenizer/word-count";

function seconds(start: bigint): number {
  return Number(process.hrtime.bigint() - start) / 1e9;
}

/** The arguments of this script, parsed and checked. */
export interface TokenizerBenchArgs {
  vocabSize: number;
  threads: number;
}

/** Parses argv (without node and the script); exits with a message on an unknown flag or a bad value. */
export function parseArgs(argv: string[]): TokenizerBenchArgs {
  let parsed: TokenizerBenchArgs | undefined;
  yargs(argv)
    .command(
      "$0 [vocabSize] [threads]",
      "Tokenizer benchmark on the Brown corpus: word counting (calling thread vs worker threads), WordPiece training, encoding, packing and MLM masking speed.",
      (y) =>
        y
          .positional("vocabSize", { type: "number", default: 30000, describe: "WordPiece vocabulary size" })
          .positional("threads", { type: "number", default: Math.min(4, os.availableParallelism()), describe: "worker threads for word counting" })
          .check((a) => {
            if (!Number.isInteger(a.vocabSize) || !Number.isInteger(a.threads) || a.threads < 1) throw new Error("usage: node dist/bench/tokenizer.js [vocabSize] [threads]");
            return true;
          }),
      (a) => {
        parsed = { vocabSize: a.vocabSize, threads: a.threads };
      },
    )
    .parserConfiguration({ "duplicate-arguments-array": false, "boolean-negation": false })
    .strict()
    .parseSync();
  if (parsed === undefined) throw new Error("usage: node dist/bench/tokenizer.js [vocabSize] [threads]");
  return parsed;
}

async function main(): Promise<void> {
  const { vocabSize, threads } = parseArgs(hideBin(process.argv));
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

if (require.main === module) {
  main().catch((e: unknown) => {
    console.error(e);
    process.exit(1);
  });
}
