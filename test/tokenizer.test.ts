import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { basicTokenize } from "../shared/tokenizer/basic";
import { BertTokenizer, cleanUpTokenization, truncateLongestFirst } from "../shared/tokenizer/bert-tokenizer";
import { Vocab, SPECIAL_TOKENS } from "../shared/tokenizer/vocab";
import { wordpiece } from "../shared/tokenizer/wordpiece";

// Expected outputs below are derived by hand from HF BertTokenizer's algorithm (BasicTokenizer, then
// WordpieceTokenizer), including the cases of transformers' own tokenization tests.

test("BasicTokenizer: lower-case, strip accents, split punctuation", () => {
  assert.deepEqual(basicTokenize("Héllo, WORLD!"), ["hello", ",", "world", "!"]);
  assert.deepEqual(basicTokenize(" \tHeLLo!how  \n Are yoU?  "), ["hello", "!", "how", "are", "you", "?"]);
  assert.deepEqual(basicTokenize(" \tHäLLo!how  \n Are yoU?  "), ["hallo", "!", "how", "are", "you", "?"]);
  assert.deepEqual(basicTokenize("don't stop-me now..."), ["don", "'", "t", "stop", "-", "me", "now", ".", ".", "."]);
  assert.deepEqual(basicTokenize("¿Qué tal? «bien»"), ["¿", "que", "tal", "?", "«", "bien", "»"]);
  assert.deepEqual(basicTokenize("$5 + 3^2 = `x`"), ["$", "5", "+", "3", "^", "2", "=", "`", "x", "`"]);
});

test("BasicTokenizer: cased keeps case and accents; lower-case without accent stripping", () => {
  assert.deepEqual(basicTokenize("Héllo, WORLD!", { lowerCase: false }), ["Héllo", ",", "WORLD", "!"]);
  assert.deepEqual(basicTokenize(" \tHäLLo!how  \n Are yoU?  ", { lowerCase: false }), ["HäLLo", "!", "how", "Are", "yoU", "?"]);
  assert.deepEqual(basicTokenize(" \tHäLLo!how  \n Are yoU?  ", { lowerCase: true, stripAccents: false }), [
    "hällo", "!", "how", "are", "you", "?",
  ]);
});

test("BasicTokenizer: control characters, odd whitespace and CJK", () => {
  // NUL, U+FFFD, zero-width space (Cf) and a bell (Cc) vanish; NBSP, U+3000 and line separator split.
  assert.deepEqual(basicTokenize("a\u0000b\ufffdc\u200bd\u0007e"), ["abcde"]);
  assert.deepEqual(basicTokenize("one\u00a0two\u3000three\u2028four"), ["one", "two", "three", "four"]);
  assert.deepEqual(basicTokenize("ah\u535A\u63A8zz"), ["ah", "\u535A", "\u63A8", "zz"]);
  assert.deepEqual(basicTokenize("ah\u535A\u63A8zz", { splitCjk: false }), ["ah\u535A\u63A8zz"]);
  // Kana and Hangul are not in BERT's CJK ranges: they stay in their word. Accent stripping runs NFD,
  // which decomposes Hangul syllables into jamo (category Lo, so kept), exactly as HF uncased does.
  assert.deepEqual(basicTokenize("カタカナ한국어"), ["カタカナ한국어".normalize("NFD")]);
  assert.notEqual("한국어".normalize("NFD"), "한국어");
  assert.deepEqual(basicTokenize("カタカナ한국어", { lowerCase: false }), ["カタカナ한국어"]);
  // Astral code points stay whole (CJK extension B is split off, an emoji is a letter-like symbol).
  assert.deepEqual(basicTokenize("x\u{20000}y🙂z"), ["x", "\u{20000}", "y🙂z"]);
  // Combining marks of a decomposed accent are stripped; NFD of U+037E (Greek question mark) is ";".
  assert.deepEqual(basicTokenize("cafe\u0301\u037e"), ["cafe", ";"]);
  assert.deepEqual(basicTokenize(""), []);
  assert.deepEqual(basicTokenize("   \n\t "), []);
});

test("BasicTokenizer: NFC before splitting, as HF; the uncased path (NFD + strip) is unchanged by it", () => {
  // Cased: a decomposed accent is composed, so "cafe" + U+0301 and "café" are one word, as in HF's cased models.
  assert.deepEqual(basicTokenize("Cafe\u0301 caf\u00e9", { lowerCase: false }), ["Caf\u00e9", "caf\u00e9"]);
  assert.deepEqual(basicTokenize("Cafe\u0301", { lowerCase: true, stripAccents: false }), ["caf\u00e9"]);
  // Singleton mappings: Angstrom sign -> Å; Greek varia (a symbol) -> "`", which is then split off as punctuation.
  assert.deepEqual(basicTokenize("\u212B a\u1FEFb", { lowerCase: false }), ["\u00C5", "a", "`", "b"]);
  // A CJK compatibility ideograph becomes its unified form in both modes (HF: NFC, then NFD when uncased).
  assert.deepEqual(basicTokenize("x\uF900y", { lowerCase: false }), ["x", "\u8C48", "y"]);
  assert.deepEqual(basicTokenize("x\uF900y"), ["x", "\u8C48", "y"]);
  const bert = new BertTokenizer(new Vocab([...SPECIAL_TOKENS, "caf\u00e9"]), { lowerCase: false });
  assert.deepEqual(bert.tokenize("cafe\u0301"), ["caf\u00e9"], "the composed word is found in a cased vocabulary");
  // Uncased output does not depend on the input's normal form (HF applies NFC first, then lower-case and NFD).
  for (const s of ["Cafe\u0301 Ä\u0308 \u1FBC \u0130stanbul \u212Bngstr\u00F6m \u1E9E", "\uAC00\u11A8 \u0041\u030A\u0301 \u03D3"]) {
    assert.deepEqual(basicTokenize(s.normalize("NFC")), basicTokenize(s), s);
    assert.deepEqual(basicTokenize(s.normalize("NFD")), basicTokenize(s), s);
  }
  assert.deepEqual(basicTokenize("Cafe\u0301 Ä"), ["cafe", "a"]);
});

const SMALL_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "want", "##want", "##ed", "wa", "un", "runn", "##ing", ",", "!"];

test("WordPiece: greedy longest match, [UNK] for unmatchable or over-long words", () => {
  const v = new Vocab(SMALL_VOCAB);
  const has = (p: string): boolean => v.has(p);
  assert.deepEqual(wordpiece("unwanted", has, "[UNK]"), ["un", "##want", "##ed"]);
  assert.deepEqual(wordpiece("running", has, "[UNK]"), ["runn", "##ing"]);
  assert.deepEqual(wordpiece("unwantedx", has, "[UNK]"), ["[UNK]"]);
  const long = "wa" + "##ed".repeat(0) + "want".repeat(25);
  assert.equal(Array.from(long).length, 102);
  assert.deepEqual(wordpiece(long, has, "[UNK]"), ["[UNK]"]);
  assert.deepEqual(wordpiece(long, (p) => p === "wa" || p === "##want", "[UNK]", 200), ["wa", ...Array(25).fill("##want")]);
  const tok = new BertTokenizer(v);
  assert.deepEqual(tok.tokenize("UNwanted, running!"), ["un", "##want", "##ed", ",", "runn", "##ing", "!"]);
  assert.deepEqual(tok.tokenize("unwantedX running"), ["[UNK]", "runn", "##ing"]);
  assert.deepEqual(tok.tokenize(""), []);
});

test("special-token strings in text stay whole; other case variants are split", () => {
  const tok = new BertTokenizer(new Vocab([...SMALL_VOCAB, "[", "]", "mask"]));
  assert.deepEqual(tok.tokenize("want[MASK]running [SEP]"), ["want", "[MASK]", "runn", "##ing", "[SEP]"]);
  assert.deepEqual(tok.tokenize("[mask]"), ["[", "mask", "]"]);
});

test("encode: [CLS] A [SEP] B [SEP], token types, longest-first truncation", () => {
  const tok = new BertTokenizer(new Vocab(SMALL_VOCAB));
  const e = tok.encode("unwanted", "running!");
  assert.deepEqual(tok.convertIdsToTokens(e.ids), ["[CLS]", "un", "##want", "##ed", "[SEP]", "runn", "##ing", "!", "[SEP]"]);
  assert.deepEqual(e.tokenTypeIds, [0, 0, 0, 0, 0, 1, 1, 1, 1]);
  const noSpecial = tok.encode("unwanted", undefined, { addSpecialTokens: false });
  assert.deepEqual(tok.convertIdsToTokens(noSpecial.ids), ["un", "##want", "##ed"]);
  assert.deepEqual(noSpecial.tokenTypeIds, [0, 0, 0]);
  const cut = tok.encode("unwanted , running", "want", { maxLength: 7 });
  assert.deepEqual(tok.convertIdsToTokens(cut.ids), ["[CLS]", "un", "##want", "##ed", "[SEP]", "want", "[SEP]"]);
  assert.throws(() => tok.encode("want", "want", { maxLength: 2 }), /cannot hold the 3 special tokens/);
  // longest_first: drop from the longer side, from B on ties.
  assert.deepEqual(truncateLongestFirst([1, 2, 3, 4, 5], [6, 7, 8, 9, 10], 7), [[1, 2, 3, 4], [6, 7, 8]]);
  assert.deepEqual(truncateLongestFirst([1, 2, 3, 4, 5, 6], [7, 8], 5), [[1, 2, 3], [7, 8]]);
  assert.deepEqual(truncateLongestFirst([1, 2], [3, 4, 5, 6, 7], 3), [[1, 2], [3]]);
  assert.deepEqual(truncateLongestFirst([1, 2, 3], undefined, 1), [[1], undefined]);
});

test("decode: glue ## pieces, drop specials on request, HF clean-up of spaces", () => {
  const tok = new BertTokenizer(new Vocab(SMALL_VOCAB));
  const ids = tok.encode("unwanted, running!").ids;
  assert.equal(tok.decode(ids), "[CLS] unwanted, running! [SEP]");
  assert.equal(tok.decode(ids, { skipSpecialTokens: true }), "unwanted, running!");
  assert.equal(tok.decode(ids, { skipSpecialTokens: true, cleanUpTokenizationSpaces: false }), "unwanted , running !");
  assert.equal(cleanUpTokenization("i do n't know , he 's here ."), "i don't know, he's here.");
});

test("vocab.txt: save and load round trip, CRLF, duplicates, errors", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ringtrain-vocab-"));
  try {
    const file = path.join(dir, "vocab.txt");
    const v = new Vocab(SMALL_VOCAB);
    v.save(file);
    assert.equal(fs.readFileSync(file, "utf8"), SMALL_VOCAB.join("\n") + "\n");
    const back = Vocab.load(file);
    assert.deepEqual(back.tokens, SMALL_VOCAB);
    assert.equal(back.hash, v.hash);
    assert.deepEqual(back.specialIds(), { pad: 0, unk: 1, cls: 2, sep: 3, mask: 4 });
    const crlf = Vocab.parse("[UNK]\r\na\r\na\r\n");
    assert.deepEqual(crlf.tokens, ["[UNK]", "a", "a"]);
    assert.equal(crlf.id("a"), 2, "a later duplicate wins, as in HF load_vocab");
    fs.writeFileSync(path.join(dir, "empty.txt"), "");
    assert.throws(() => Vocab.load(path.join(dir, "empty.txt")), /empty\.txt: vocabulary file is empty/);
    assert.throws(() => Vocab.load(path.join(dir, "missing.txt")), /cannot read vocabulary .*missing\.txt/);
    assert.throws(() => new Vocab(["[UNK]"]).specialIds(), /lacks special token\(s\) \[PAD\] \[CLS\] \[SEP\] \[MASK\]/);
    assert.throws(() => new BertTokenizer(new Vocab(["a"])), /lacks the \[UNK\] token/);
    assert.deepEqual([...SPECIAL_TOKENS], ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("a BERT-style vocab with specials elsewhere (ids by name, not position)", () => {
  const tokens = ["[PAD]", ...Array.from({ length: 99 }, (_, i) => `[unused${i}]`), "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world", "!"];
  const tok = new BertTokenizer(new Vocab(tokens));
  assert.deepEqual(tok.specialIds, { pad: 0, unk: 100, cls: 101, sep: 102, mask: 103 });
  assert.deepEqual(tok.encode("Hello WORLD!").ids, [101, 104, 105, 106, 102]);
  assert.deepEqual(tok.encode("hello xyz").ids, [101, 104, 100, 102]);
});
