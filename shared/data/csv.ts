/** One parsed CSV record with the 1-based line it starts on. */
export interface CsvRow {
  line: number;
  fields: string[];
}

/**
 * Parses RFC 4180 CSV: comma-separated fields, optional double quotes around a field (which may then hold
 * commas, line breaks and "" for a quote), records ending in LF or CRLF. `separator` "\t" reads TSV with the same
 * quoting (as Python's csv and pandas do). `source` names the input in errors, which give the line: an unterminated
 * quote (line where it opened), or a quote inside an unquoted field or text after a closing quote.
 */
export function parseCsv(text: string, source: string, separator: "," | "\t" = ","): CsvRow[] {
  const rows: CsvRow[] = [];
  let fields: string[] = [];
  let field = "";
  let line = 1;
  let rowLine = 1;
  let i = 0;
  let atFieldStart = true;
  const n = text.length;
  const endRow = (): void => {
    fields.push(field);
    // A completely empty line is skipped rather than read as a one-field record.
    if (!(fields.length === 1 && fields[0] === "")) rows.push({ line: rowLine, fields });
    fields = [];
    field = "";
    atFieldStart = true;
  };
  while (i < n) {
    const c = text[i];
    if (atFieldStart && c === '"') {
      const openLine = line;
      i++;
      for (;;) {
        if (i >= n) throw new Error(`${source}:${openLine}: unterminated quoted field`);
        const q = text[i];
        if (q === '"') {
          if (text[i + 1] === '"') {
            field += '"';
            i += 2;
            continue;
          }
          i++;
          break;
        }
        if (q === "\n") line++;
        field += q;
        i++;
      }
      // After a closing quote only a separator or the end of the record may follow.
      const next = text[i];
      if (i < n && next !== separator && next !== "\n" && !(next === "\r" && text[i + 1] === "\n")) {
        throw new Error(`${source}:${line}: unexpected ${JSON.stringify(next)} after a closing quote`);
      }
      atFieldStart = false;
      continue;
    }
    if (c === separator) {
      fields.push(field);
      field = "";
      atFieldStart = true;
      i++;
    } else if (c === "\n" || (c === "\r" && text[i + 1] === "\n")) {
      endRow();
      i += c === "\r" ? 2 : 1;
      line++;
      rowLine = line;
    } else {
      if (c === '"') throw new Error(`${source}:${line}: quote inside an unquoted field`);
      field += c;
      atFieldStart = false;
      i++;
    }
  }
  if (!atFieldStart || field !== "" || fields.length > 0) endRow();
  return rows;
}
