import type { Document } from "./document";
import { DEFAULT_FIELDS, type RecordFields } from "./fields";
import { readUtf8 } from "./text-reader";

/**
 * Reads JSON Lines: one object per non-blank line with a string `text`; optional `label` (string or number),
 * `text_pair`, `genre` and `id` (default "<file>:<line>"); `fields` renames text, text_pair and label. Errors name
 * the file and line.
 */
export function readJsonlDocuments(file: string, fields: RecordFields = DEFAULT_FIELDS): Document[] {
  const docs: Document[] = [];
  readUtf8(file).split("\n").forEach((raw, i) => {
    const line = raw.endsWith("\r") ? raw.slice(0, -1) : raw;
    if (line.trim() === "") return;
    const where = `${file}:${i + 1}`;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch (e) {
      throw new Error(`${where}: invalid JSON: ${(e as Error).message}`);
    }
    if (typeof value !== "object" || value === null || Array.isArray(value)) throw new Error(`${where}: expected a JSON object`);
    docs.push(documentFromRecord(value as Record<string, unknown>, `${file}:${i + 1}`, where, fields));
  });
  if (docs.length === 0) throw new Error(`${file}: no documents`);
  return docs;
}

/**
 * Validates one record's fields (shared by the JSONL and CSV readers); `where` prefixes errors, which name the
 * key as `fields` configures it.
 */
export function documentFromRecord(rec: Record<string, unknown>, defaultId: string, where: string, fields: RecordFields = DEFAULT_FIELDS): Document {
  const text = rec[fields.text];
  if (typeof text !== "string") throw new Error(`${where}: field ${JSON.stringify(fields.text)} must be a string, got ${describe(text)}`);
  const doc: Document = { id: defaultId, text };
  const id = optionalString(rec, "id", where, true);
  if (id !== undefined) {
    doc.id = id;
    // the record's own id says nothing about where it is: keep the file and line for errors
    doc.source = where;
  }
  const label = optionalString(rec, fields.label, where, true);
  // An empty label is a missing one (as an empty CSV cell is), not a class named "" (pandas writes NaN as "").
  if (label !== undefined && label.trim() !== "") doc.label = label;
  const pair = optionalString(rec, fields.textPair, where, false);
  if (pair !== undefined) doc.textPair = pair;
  const genre = optionalString(rec, "genre", where, false);
  if (genre !== undefined) doc.genre = genre;
  return doc;
}

function optionalString(rec: Record<string, unknown>, field: string, where: string, numberOk: boolean): string | undefined {
  const v = rec[field];
  if (v === undefined || v === null) return undefined;
  if (typeof v === "string") return v;
  if (numberOk && typeof v === "number" && Number.isFinite(v)) return String(v);
  throw new Error(`${where}: field ${JSON.stringify(field)} must be a string${numberOk ? " or number" : ""}, got ${describe(v)}`);
}

function describe(v: unknown): string {
  return v === undefined ? "nothing" : v === null ? "null" : Array.isArray(v) ? "an array" : typeof v;
}
