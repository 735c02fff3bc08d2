import { constants } from "node:buffer";
import * as fs from "node:fs";
import * as path from "node:path";
import * as zlib from "node:zlib";
import type { Document } from "./document";

/**
 * Reads plain-text documents: a file is one document; a folder gives one document per file found below it
 * (see folderFiles), every file read as text (loadCorpus reads a folder's .jsonl/.csv files by their format). Blank-line paragraphs stay in their document. Files must be valid UTF-8; an error names the
 * file and line of the first bad byte.
 */
export function readTextDocuments(target: string): Document[] {
  if (statOf(target).isFile()) return [{ id: path.basename(target), text: readUtf8(target) }];
  return folderFiles(target).map((rel) => ({ id: rel, text: readUtf8(path.join(target, rel)) }));
}

/**
 * The files below a folder, as paths relative to it, sorted; hidden entries skipped, symbolic links followed (a
 * link back into a folder already being read is skipped, so a cycle cannot loop). Throws naming the folder when
 * it holds no file.
 */
export function folderFiles(target: string): string[] {
  if (!statOf(target).isDirectory()) throw new Error(`${target} is neither a file nor a folder`);
  const files: string[] = [];
  walk(target, "", files, new Set([fs.realpathSync(target)]));
  if (files.length === 0) throw new Error(`${target}: folder holds no text files`);
  return files;
}

function statOf(target: string): fs.Stats {
  try {
    return fs.statSync(target);
  } catch (e) {
    throw new Error(`cannot read ${target}: ${(e as Error).message}`);
  }
}

function walk(root: string, rel: string, out: string[], open: Set<string>): void {
  const entries = fs.readdirSync(path.join(root, rel), { withFileTypes: true });
  entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const e of entries) {
    if (e.name.startsWith(".")) continue;
    const r = rel === "" ? e.name : `${rel}/${e.name}`;
    let isDir = e.isDirectory();
    let isFile = e.isFile();
    if (e.isSymbolicLink()) {
      const s = fs.statSync(path.join(root, r), { throwIfNoEntry: false });
      if (s === undefined) throw new Error(`${path.join(root, r)}: symbolic link to a missing file`);
      isDir = s.isDirectory();
      isFile = s.isFile();
    }
    if (isDir) {
      const real = fs.realpathSync(path.join(root, r));
      if (open.has(real)) continue;
      open.add(real);
      walk(root, r, out, open);
      open.delete(real);
    } else if (isFile) out.push(r);
  }
}

const decoder = new TextDecoder("utf-8", { fatal: true });

/** True for a path whose bytes are gzip-compressed (read transparently; the extension before ".gz" is its format). */
export function isGzip(file: string): boolean {
  return file.toLowerCase().endsWith(".gz");
}

/**
 * Reads a UTF-8 file (BOM dropped), gunzipping a ".gz" file first; invalid bytes raise an error naming file and
 * line, and a file longer than one JavaScript string can hold (~512 MB) an error that says so.
 */
export function readUtf8(file: string): string {
  let bytes: Buffer;
  try {
    bytes = fs.readFileSync(file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ERR_FS_FILE_TOO_LARGE") throw tooLarge(file, fs.statSync(file).size);
    throw new Error(`cannot read ${file}: ${(e as Error).message}`);
  }
  if (isGzip(file)) {
    try {
      bytes = zlib.gunzipSync(bytes);
    } catch (e) {
      if (e instanceof RangeError) throw tooLarge(file, undefined);
      throw new Error(`cannot read ${file}: not valid gzip data (${(e as Error).message})`);
    }
  }
  try {
    const text = decoder.decode(bytes);
    return text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
  } catch (e) {
    // V8 refuses strings over MAX_STRING_LENGTH code units: that is the file's size, not its bytes.
    if ((e as NodeJS.ErrnoException).code === "ERR_STRING_TOO_LONG") throw tooLarge(file, bytes.length);
    const bad = firstInvalidUtf8(bytes);
    if (bad === bytes.length) throw tooLarge(file, bytes.length);
    let line = 1;
    for (let i = 0; i < bad; i++) if (bytes[i] === 0x0a) line++;
    throw new Error(`${file}:${line}: invalid UTF-8 (byte offset ${bad}${isGzip(file) ? " after decompression" : ""})`);
  }
}

function tooLarge(file: string, bytes: number | undefined): Error {
  const limit = Math.round(constants.MAX_STRING_LENGTH / 2 ** 20);
  const size = bytes === undefined ? "decompressed" : `${bytes} bytes${isGzip(file) ? " decompressed" : ""}`;
  return new Error(`${file}: file too large to read at once (${size}; limit ~${limit} MB): split it into smaller files`);
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
