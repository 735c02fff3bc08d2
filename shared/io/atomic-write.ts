/**
 * Crash-safe file replacement: the target path holds either its old complete content or the new complete
 * content, never a torn mix, even if the process dies or the machine loses power mid-write.
 *
 * Recipe: write a temp file in the same directory (rename is only atomic within one file system), fsync it
 * so the data is on disk before the name points at it, rename it over the target, then fsync the directory
 * so the rename itself is durable.
 */
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { createHash, randomBytes } from "node:crypto";

/** Receives the file's bytes piece by piece, so large files need not be built in memory first. */
export interface ChunkSink {
  write(chunk: Uint8Array): Promise<void>;
}

/** What was written: byte count and SHA-256 (hex) of the full content, computed on the way to disk. */
export interface WrittenFile {
  size: number;
  sha256: string;
}

/** File content: bytes, UTF-8 text, or a producer that writes chunks to a sink (may throw to abort). */
export type FileContent = Uint8Array | string | ((sink: ChunkSink) => Promise<void> | void);

/** Marker in temp file names; lets tools recognise (and clean up) leftovers from a crashed writer. */
export const TEMP_MARKER = ".tmp-";

/**
 * Atomically replaces `target` with `content`. On any error the temp file is removed, the old target (if any)
 * is left untouched, and the error is rethrown with the target path in its message.
 */
export async function atomicWriteFile(target: string, content: FileContent): Promise<WrittenFile> {
  const dir = path.dirname(path.resolve(target));
  const tmp = path.join(dir, `.${path.basename(target)}${TEMP_MARKER}${process.pid}-${randomBytes(6).toString("hex")}`);
  const hash = createHash("sha256");
  let size = 0;
  let fh: fs.FileHandle | undefined;
  let closed = false;
  try {
    // "wx": fail rather than follow a pre-existing file or symlink at the temp name.
    fh = await fs.open(tmp, "wx", 0o644);
    const out = fh;
    const sink: ChunkSink = {
      async write(chunk: Uint8Array): Promise<void> {
        let off = 0;
        while (off < chunk.byteLength) {
          const { bytesWritten } = await out.write(chunk, off, chunk.byteLength - off);
          off += bytesWritten;
        }
        hash.update(chunk);
        size += chunk.byteLength;
      },
    };
    if (typeof content === "string") await sink.write(Buffer.from(content, "utf8"));
    else if (content instanceof Uint8Array) await sink.write(content);
    else await content(sink);
    await out.sync();
    await out.close();
    closed = true;
    await fs.rename(tmp, target);
  } catch (err) {
    if (fh !== undefined && !closed) await fh.close().catch(() => undefined);
    await fs.rm(tmp, { force: true }).catch(() => undefined);
    const msg = err instanceof Error ? err.message : String(err);
    throw new Error(`atomic write of ${target} failed: ${msg}`, { cause: err });
  }
  await fsyncDir(dir);
  return { size, sha256: hash.digest("hex") };
}

/** Makes directory entry changes (create, rename, unlink) in `dir` durable. No-op on Windows, which cannot open directories. */
export async function fsyncDir(dir: string): Promise<void> {
  if (process.platform === "win32") return;
  const dh = await fs.open(dir, "r");
  try {
    await dh.sync();
  } finally {
    await dh.close();
  }
}
