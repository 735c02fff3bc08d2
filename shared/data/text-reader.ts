import * as fs from "node:fs";
import * as path from "node:path";
import type { Document } from "./document";

/**
 * Reads plain-text documents: a file is one document; a folder gives one document per file found below it
 * (sorted by relative path, hidden entries skipped). Blank-line paragraphs stay in their document. Files
 * must be valid UTF-8; an error names the file and line of the first bad byte.
 */
export function readTextDocuments(target: string): Document[] {
  let stat: fs.Stats;
  try {
    stat = fs.statSync(target);
  } catch (e) {
    throw new Error(`cannot read ${target}: ${(e as Error).message}`);
  }
  if (stat.isFile()) return [{ id: path.basename(target), text: readUtf8(target) }];
  if (!stat.isDirectory()) throw new Error(`${target} is neither a file nor a folder`);
  const files: string[] = [];
  walk(target, "", files);
  if (files.length === 0) throw new Error(`${target}: folder holds no text files`);
  return files.map((rel) => ({ id: rel, text: readUtf8(path.join(target, rel)) }));
}

function walk(root: string, rel: string, out: string[]): void {
  const entries = fs.readdirSync(path.join(root, rel), { withFileTypes: true });
  entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const e of entries) {
    if (e.name.startsWith(".")) continue;
    const r = rel === "" ? e.name : `${rel}/${e.name}`;
    if (e.isDirectory()) walk(root, r, out);
    else if (e.isFile()) out.push(r);
  }
}

const decoder = new TextDecoder("utf-8", { fatal: true });

/** Reads a UTF-8 file (BOM dropped); invalid bytes raise an error naming file and line. */
export function readUtf8(file: string): string {
  let bytes: Buffer;
  try {
    bytes = fs.readFileSync(file);
  } catch (e) {
    throw new Error(`cannot read ${file}: ${(e as Error).message}`);
  }
  try {
    const text = decoder.decode(bytes);
    return text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
  } catch {
    const bad = firstInvalidUtf8(bytes);
    let line = 1;
    for (let i = 0; i < bad; i++) if (bytes[i] === 0x0a) line++;
    throw new Error(`${file}:${line}: invalid UTF-8 (byte offset ${bad})`);
  }
}

function firstInvalidUtf8(b: Buffer): number {
  let i = 0;
  while (i < b.length) {
    const c = b[i];
    const n = c < 0x80 ? 0 : c >= 0xc2 && c < 0xe0 ? 1 : c >= 0xe0 && c < 0xf0 ? 2 : c >= 0xf0 && c < 0xf5 ? 3 : -1;
    if (n < 0 || i + n >= b.length) return i;
    for (let k = 1; k <= n; k++) if ((b[i + k] & 0xc0) !== 0x80) return i;
    if (n > 0) {
      // Reject overlong and surrogate encodings that the simple lead/continuation test lets through.
      const cp = decodeCp(b, i, n);
      if ((n === 2 && cp < 0x800) || (n === 3 && cp < 0x10000) || (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff) return i;
    }
    i += n + 1;
  }
  return b.length;
}

function decodeCp(b: Buffer, i: number, n: number): number {
  let cp = b[i] & (0x3f >> n);
  for (let k = 1; k <= n; k++) cp = (cp << 6) | (b[i + k] & 0x3f);
  return cp;
}
