import type { Document } from "./document";
import { parseCsv } from "./csv";
import { DEFAULT_FIELDS, type RecordFields } from "./fields";
import { documentFromRecord } from "./jsonl-reader";
import { readUtf8 } from "./text-reader";

/**
 * Reads a CSV file whose header names the columns: `text` is required; `label`, `text_pair`, `genre` and
 * `id` are used when present, other columns ignored; `fields` renames text, text_pair and label. Every record must
 * have as many fields as the header; errors name the file and line. `separator` "\t" reads TSV (same rules).
 */
export function readCsvDocuments(file: string, fields: RecordFields = DEFAULT_FIELDS, separator: "," | "\t" = ","): Document[] {
  const rows = parseCsv(readUtf8(file), file, separator);
  if (rows.length === 0) throw new Error(`${file}: empty ${separator === "," ? "CSV" : "TSV"} file`);
  const header = rows[0].fields.map((h) => h.trim());
  if (!header.includes(fields.text)) throw new Error(`${file}:${rows[0].line}: header has no ${JSON.stringify(fields.text)} column`);
  const dup = header.find((h, i) => header.indexOf(h) !== i);
  if (dup !== undefined) throw new Error(`${file}:${rows[0].line}: column ${JSON.stringify(dup)} appears twice`);
  const docs: Document[] = [];
  for (const row of rows.slice(1)) {
    const where = `${file}:${row.line}`;
    if (row.fields.length !== header.length) {
      throw new Error(`${where}: expected ${header.length} fields as in the header, got ${row.fields.length}`);
    }
    const rec: Record<string, unknown> = {};
    header.forEach((h, k) => {
      // An empty optional cell means "absent", not an empty label.
      if (h === fields.text || row.fields[k] !== "") rec[h] = row.fields[k];
    });
    docs.push(documentFromRecord(rec, where, where, fields));
  }
  if (docs.length === 0) throw new Error(`${file}: no documents after the header`);
  return docs;
}
