import * as fs from "node:fs";
import { createHash } from "node:crypto";

/** The special tokens ringtrain's trainer puts at ids 0..4, in this order. */
export const SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] as const;

/** Ids of the special tokens within one vocabulary (looked up by name, so a BERT vocab.txt works too). */
export interface SpecialIds {
  pad: number;
  unk: number;
  cls: number;
  sep: number;
  mask: number;
}

/**
 * A WordPiece vocabulary: token strings by id. The file format is BERT's vocab.txt: one token per line,
 * line index = id, lines split on "\n" only (a trailing "\r" is dropped). As in HF's load_vocab, when a
 * token appears twice the later line wins the token -> id lookup.
 */
export class Vocab {
  readonly tokens: readonly string[];
  private readonly ids: Map<string, number>;
  private hashCache: string | undefined;

  /** Builds a vocabulary from tokens in id order. */
  constructor(tokens: readonly string[]) {
    if (tokens.length === 0) throw new Error("a vocabulary needs at least one token");
    this.tokens = tokens.slice();
    this.ids = new Map();
    this.tokens.forEach((t, i) => this.ids.set(t, i));
  }

  /** Reads a vocab.txt; errors name the file. */
  static load(file: string): Vocab {
    let text: string;
    try {
      text = fs.readFileSync(file, "utf8");
    } catch (e) {
      throw new Error(`cannot read vocabulary ${file}: ${(e as Error).message}`);
    }
    return Vocab.parse(text, file);
  }

  /** Parses vocab.txt contents; `source` names the origin in errors. */
  static parse(text: string, source = "<vocab>"): Vocab {
    const lines = text.split("\n");
    if (lines.length > 0 && lines[lines.length - 1] === "") lines.pop();
    if (lines.length === 0) throw new Error(`${source}: vocabulary file is empty`);
    return new Vocab(lines.map((l) => (l.endsWith("\r") ? l.slice(0, -1) : l)));
  }

  /** The vocab.txt text (every token followed by "\n"). */
  serialize(): string {
    for (let i = 0; i < this.tokens.length; i++) {
      if (/[\n\r]/.test(this.tokens[i])) throw new Error(`token ${i} contains a line break and cannot be saved`);
    }
    return this.tokens.join("\n") + "\n";
  }

  /** Writes vocab.txt. */
  save(file: string): void {
    fs.writeFileSync(file, this.serialize(), "utf8");
  }

  /** Number of ids. */
  get size(): number {
    return this.tokens.length;
  }

  /** Id of a token, or undefined. */
  id(token: string): number | undefined {
    return this.ids.get(token);
  }

  /** True when the token string is in the vocabulary. */
  has(token: string): boolean {
    return this.ids.has(token);
  }

  /** Token string of an id; throws on an id out of range. */
  token(id: number): string {
    const t = this.tokens[id];
    if (t === undefined) throw new Error(`token id ${id} is outside the vocabulary (size ${this.tokens.length})`);
    return t;
  }

  /** SHA-256 of the vocab.txt text: part of every data cache key. */
  get hash(): string {
    this.hashCache ??= createHash("sha256").update(this.serialize()).digest("hex");
    return this.hashCache;
  }

  /** Ids of [PAD] [UNK] [CLS] [SEP] [MASK]; throws naming the ones the vocabulary lacks. */
  specialIds(): SpecialIds {
    const missing = SPECIAL_TOKENS.filter((t) => !this.ids.has(t));
    if (missing.length > 0) throw new Error(`vocabulary lacks special token(s) ${missing.join(" ")}`);
    const get = (t: string): number => this.ids.get(t) as number;
    return { pad: get("[PAD]"), unk: get("[UNK]"), cls: get("[CLS]"), sep: get("[SEP]"), mask: get("[MASK]") };
  }
}
