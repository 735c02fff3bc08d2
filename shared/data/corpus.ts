import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { loadBrown } from "./brown";
import { readCsvDocuments } from "./csv-reader";
import type { Document } from "./document";
import { DEFAULT_FIELDS, type RecordFields } from "./fields";
import { readJsonlDocuments } from "./jsonl-reader";
import { loadSpamAssassin } from "./spam-assassin";
import { folderFiles, isGzip, readTextDocuments, readUtf8 } from "./text-reader";

/** Where documents come from: a built-in corpus or files. */
export type CorpusSpec =
  | { kind: "brown" }
  | { kind: "spam-assassin" }
  | { kind: "text"; path: string }
  | { kind: "jsonl"; path: string }
  | { kind: "csv"; path: string }
  | { kind: "tsv"; path: string };

/**
 * Parses a command-line corpus name: "brown", "spam-assassin", "text:PATH", "jsonl:PATH", "csv:PATH", "tsv:PATH",
 * or a bare PATH whose extension decides (.jsonl/.ndjson, .csv, .tsv, anything else or a folder: plain text). A
 * ".gz" file is read decompressed, in the format of the extension before ".gz" (x.jsonl.gz is JSONL).
 */
export function parseCorpusSpec(spec: string): CorpusSpec {
  if (spec === "brown" || spec === "spam-assassin") return { kind: spec };
  const m = /^(text|jsonl|csv|tsv):(.+)$/.exec(spec);
  if (m !== null) return { kind: m[1] as "text" | "jsonl" | "csv" | "tsv", path: m[2] };
  if (spec.trim() === "") throw new Error("empty corpus name");
  const ext = path.extname(isGzip(spec) ? spec.slice(0, -3) : spec).toLowerCase();
  if (ext === ".jsonl" || ext === ".ndjson") return { kind: "jsonl", path: spec };
  if (ext === ".csv") return { kind: "csv", path: spec };
  if (ext === ".tsv") return { kind: "tsv", path: spec };
  return { kind: "text", path: spec };
}

/** Loads the documents of a corpus; `fields` names the text, text-pair and label keys of JSONL and CSV files. */
export function loadCorpus(spec: CorpusSpec, fields: RecordFields = DEFAULT_FIELDS): Document[] {
  switch (spec.kind) {
    case "brown":
      return loadBrown();
    case "spam-assassin":
      return loadSpamAssassin();
    case "text":
      return fs.statSync(spec.path, { throwIfNoEntry: false })?.isDirectory() === true ? readFolder(spec.path, fields) : readTextDocuments(spec.path);
    case "jsonl":
      return readJsonlDocuments(spec.path, fields);
    case "csv":
      return readCsvDocuments(spec.path, fields);
    case "tsv":
      return readCsvDocuments(spec.path, fields, "\t");
  }
}

/**
 * A folder's files, each read by its extension as a path given directly would be (.jsonl/.ndjson, .csv, .tsv, each
 * also .gz; anything else plain text, one document per file), in sorted order.
 */
function readFolder(folder: string, fields: RecordFields): Document[] {
  return folderFiles(folder).flatMap((rel) => {
    const spec = parseCorpusSpec(path.join(folder, rel));
    return spec.kind === "text" ? [{ id: rel, text: readUtf8(spec.path) }] : loadCorpus(spec, fields);
  });
}

/** SHA-256 over every document's fields (length-prefixed, so field boundaries cannot collide). */
export function corpusHash(docs: readonly Document[]): string {
  const h = createHash("sha256");
  const field = (s: string | undefined): void => {
    if (s === undefined) h.update("-");
    else h.update(`${s.length}:`).update(s);
  };
  h.update(`${docs.length};`);
  for (const d of docs) {
    field(d.id);
    field(d.text);
    field(d.genre);
    field(d.label);
    field(d.textPair);
  }
  return h.digest("hex");
}
