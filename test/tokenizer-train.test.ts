import { test } from "node:test";
import assert from "node:assert/strict";
import { loadBrown } from "../shared/data/brown";
import { basicTokenize } from "../shared/tokenizer/basic";
import { trainTokenizer } from "../shared/tokenizer/train";
import { trainWordPiece } from "../shared/tokenizer/trainer";
import { countWords, type WordCounts } from "../shared/tokenizer/word-count";

test("trainer: hand-derived merges on a toy corpus", () => {
  const counts: WordCounts = new Map([["hug", 10], ["pug", 5], ["pun", 12], ["bun", 4], ["hugs", 5]]);
  const { vocab, merges, alphabetSize } = trainWordPiece(counts, { vocabSize: 20 });
  // specials, alphabet (sorted), "##" chars (sorted), then merges: ##u+##g (20), ##u+##n (16), h+##ug (15), p+##un (12).
  assert.deepEqual(vocab.tokens, [
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",
    "b", "g", "h", "n", "p", "s", "u",
    "##g", "##n", "##s", "##u",
    "##ug", "##un", "hug", "pun",
  ]);
  assert.equal(merges, 4);
  assert.equal(alphabetSize, 11);
  // minFrequency stops merging: only pairs seen >= 16 times are merged.
  assert.deepEqual(trainWordPiece(counts, { vocabSize: 100, minFrequency: 16 }).vocab.tokens.slice(16), ["##ug", "##un"]);
  // limitAlphabet keeps the most frequent characters (u 36, g 20, p 17); the others vanish from the words,
  // so "hug" trains as ##u ##g and "pun" as p ##u: merges ##u+##g (20), then p+##u (12).
  const limited = trainWordPiece(counts, { vocabSize: 12, limitAlphabet: 3 }).vocab.tokens;
  assert.deepEqual(limited.slice(5), ["g", "p", "u", "##g", "##u", "##ug", "pu"]);
  assert.throws(() => trainWordPiece(counts, { vocabSize: 5 }), /vocabSize must be an integer above the 5 special tokens/);
});

test("trainer: words longer than the encoder's 100-character limit are not counted (they encode as [UNK] whole)", () => {
  // 101 code points, 2 of them astral (103 code units); the encoder would turn it into [UNK], so it must teach nothing.
  const long = "q".repeat(99) + "😀😀";
  const atLimit = "z".repeat(100);
  const counts: WordCounts = new Map([["hug", 10], ["pug", 5], [long, 50], [atLimit, 3]]);
  const tokens = trainWordPiece(counts, { vocabSize: 40 }).vocab.tokens;
  assert.ok(!tokens.some((t) => t.includes("q") || t.includes("😀")), `no piece of the long word: ${tokens.join(" ")}`);
  assert.ok(tokens.includes("z") && tokens.includes("##zz"), "a word of exactly 100 code points is still counted");
  assert.ok(!trainWordPiece(counts, { vocabSize: 40, maxCharsPerWord: 99 }).vocab.tokens.includes("z"), "maxCharsPerWord sets the limit");
});

/** The textbook trainer: recount every pair after every merge. Same tie rule (count, then smaller ids). */
function naiveTrain(counts: WordCounts, vocabSize: number, minFrequency: number, base: string[]): string[] {
  const tokens = [...base];
  const id = new Map(tokens.map((t, i) => [t, i]));
  const words = [...counts.entries()]
    .sort((a, b) => (a[0] < b[0] ? -1 : 1))
    .map(([w, c]) => ({ syms: Array.from(w).map((ch, i) => id.get(i === 0 ? ch : "##" + ch) as number), c }));
  while (tokens.length < vocabSize) {
    const pc = new Map<string, { a: number; b: number; n: number }>();
    for (const { syms, c } of words) {
      for (let i = 0; i + 1 < syms.length; i++) {
        const k = `${syms[i]},${syms[i + 1]}`;
        const e = pc.get(k) ?? { a: syms[i], b: syms[i + 1], n: 0 };
        e.n += c;
        pc.set(k, e);
      }
    }
    let best: { a: number; b: number; n: number } | undefined;
    for (const e of pc.values()) {
      if (!best || e.n > best.n || (e.n === best.n && (e.a < best.a || (e.a === best.a && e.b < best.b)))) best = e;
    }
    if (!best || best.n < minFrequency) break;
    const text = tokens[best.a] + tokens[best.b].replace(/^##/, "");
    let nid = id.get(text);
    if (nid === undefined) {
      nid = tokens.length;
      tokens.push(text);
      id.set(text, nid);
    }
    for (const w of words) {
      const out: number[] = [];
      for (let i = 0; i < w.syms.length; i++) {
        if (i + 1 < w.syms.length && w.syms[i] === best.a && w.syms[i + 1] === best.b) {
          out.push(nid);
          i++;
        } else out.push(w.syms[i]);
      }
      w.syms = out;
    }
  }
  return tokens;
}

test("incremental trainer equals the recount-everything trainer", async () => {
  const docs = loadBrown().slice(0, 12);
  const counts = await countWords(docs.map((d) => d.text), { threads: 1 });
  const fast = trainWordPiece(counts, { vocabSize: 1500, minFrequency: 2 });
  const base = fast.vocab.tokens.slice(0, 5 + fast.alphabetSize);
  const slow = naiveTrain(counts, 1500, 2, base);
  assert.equal(fast.vocab.size, 1500);
  assert.deepEqual(fast.vocab.tokens, slow);
});

test("word counts are the same on worker threads and on the calling thread", async () => {
  const texts = loadBrown().slice(0, 40).map((d) => d.text);
  const one = await countWords(texts, { threads: 1 });
  const two = await countWords(texts, { threads: 2, parallelThreshold: 0 });
  assert.equal(two.size, one.size);
  for (const [w, c] of one) assert.equal(two.get(w), c, w);
  let total = 0;
  for (const t of texts) total += basicTokenize(t).length;
  assert.equal([...one.values()].reduce((a, b) => a + b, 0), total);
});

test("train on all of Brown, then encode/decode round trip", async () => {
  const docs = loadBrown();
  const { tokenizer, result } = await trainTokenizer(
    docs.map((d) => d.text),
    { vocabSize: 6000 },
  );
  assert.equal(result.vocab.size, 6000);
  assert.deepEqual(result.vocab.tokens.slice(0, 5), ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]);
  assert.equal(new Set(result.vocab.tokens).size, 6000, "no duplicate tokens");
  const sp = tokenizer.specialIds;
  for (const doc of [docs[0], docs[137], docs[499]]) {
    const words = basicTokenize(doc.text);
    const ids = tokenizer.tokenizeToIds(doc.text);
    assert.ok(ids.length >= words.length);
    assert.ok(!ids.includes(sp.unk), `every character of ${doc.id} is in the alphabet`);
    // Decoding without clean-up gives the normalised words back, space-separated.
    assert.equal(tokenizer.decode(ids, { cleanUpTokenizationSpaces: false }), words.join(" "));
    // And re-encoding the decoded text gives the same ids.
    assert.deepEqual(tokenizer.tokenizeToIds(tokenizer.decode(ids, { cleanUpTokenizationSpaces: false })), ids);
  }
  // Frequent words are single tokens; a rare long word is split into "##" pieces.
  assert.deepEqual(tokenizer.tokenize("The jury said"), ["the", "jury", "said"]);
  const pieces = tokenizer.tokenize("antidisestablishmentarianism");
  assert.ok(pieces.length > 1 && pieces.slice(1).every((p) => p.startsWith("##")), pieces.join(" "));
  assert.equal(tokenizer.decode(tokenizer.encode("antidisestablishmentarianism").ids, { skipSpecialTokens: true }), "antidisestablishmentarianism");
});
