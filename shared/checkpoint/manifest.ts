/**
 * The checkpoint manifest (`checkpoint.json`): the size and SHA-256 of every file in a checkpoint directory.
 * It is written last, atomically, so its presence means every file it lists was fully written and synced;
 * a directory without a valid manifest is an incomplete checkpoint.
 */
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { createHash } from "node:crypto";
import { z } from "zod";
import { atomicWriteFile, type WrittenFile } from "../io/atomic-write";

export const MANIFEST_FILE = "checkpoint.json";
const FORMAT = "ringtrain-checkpoint";
const VERSION = 1;
// The manifest lists a handful of files; anything bigger is not ours.
const MAX_MANIFEST_BYTES = 1 << 20;

const FileEntrySchema = z.object({
  size: z.number().int().nonnegative(),
  sha256: z.string().regex(/^[0-9a-f]{64}$/, "must be 64 lowercase hex digits"),
});

const ManifestSchema = z.object({
  format: z.literal(FORMAT),
  version: z.literal(VERSION),
  step: z.number().int().nonnegative().nullable(),
  createdAt: z.string(),
  // Plain file names only: a manifest must never point outside its directory.
  files: z.record(z.string(), FileEntrySchema).superRefine((files, ctx) => {
    for (const name of Object.keys(files)) {
      if (!/^[A-Za-z0-9_][A-Za-z0-9._-]*$/.test(name)) ctx.addIssue({ code: "custom", path: [name], message: "must be a plain file name" });
    }
  }),
});

export type CheckpointManifest = z.infer<typeof ManifestSchema>;

/** Error for an incomplete or corrupt checkpoint; `file` is the offending file's path. */
export class CheckpointError extends Error {
  constructor(
    readonly file: string,
    problem: string,
  ) {
    super(`${file}: ${problem}`);
    this.name = "CheckpointError";
  }
}

/** Writes the manifest for `files` (name -> what atomicWriteFile returned) into `dir`, atomically. */
export async function writeManifest(dir: string, files: Record<string, WrittenFile>, step: number | null): Promise<CheckpointManifest> {
  const manifest: CheckpointManifest = { format: FORMAT, version: VERSION, step, createdAt: new Date().toISOString(), files: {} };
  for (const [name, w] of Object.entries(files)) manifest.files[name] = { size: w.size, sha256: w.sha256 };
  const valid = ManifestSchema.parse(manifest);
  await atomicWriteFile(path.join(dir, MANIFEST_FILE), JSON.stringify(valid, null, 2) + "\n");
  return valid;
}

/** Reads and validates `dir`'s manifest; a missing one means the checkpoint is incomplete. */
export async function readManifest(dir: string): Promise<CheckpointManifest> {
  const file = path.join(dir, MANIFEST_FILE);
  let text: string;
  try {
    const st = await fs.stat(file);
    if (st.size > MAX_MANIFEST_BYTES) throw new CheckpointError(file, `manifest is ${st.size} bytes, over the ${MAX_MANIFEST_BYTES}-byte limit`);
    text = await fs.readFile(file, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") {
      throw new CheckpointError(file, `checkpoint ${dir} is incomplete: manifest ${MANIFEST_FILE} is missing (the save did not finish)`);
    }
    throw e;
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new CheckpointError(file, `manifest is not valid JSON: ${(e as Error).message}`);
  }
  const r = ManifestSchema.safeParse(json);
  if (!r.success) {
    const problems = r.error.issues.map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`).join("; ");
    throw new CheckpointError(file, `invalid manifest: ${problems}`);
  }
  return r.data;
}

/** Reads `name` from a checkpoint and checks it against the manifest (size, then SHA-256); returns its bytes. */
export async function readVerifiedFile(dir: string, manifest: CheckpointManifest, name: string): Promise<Buffer> {
  const file = path.join(dir, name);
  const entry = Object.prototype.hasOwnProperty.call(manifest.files, name) ? manifest.files[name] : undefined;
  if (entry === undefined) throw new CheckpointError(file, `not listed in the checkpoint manifest`);
  let bytes: Buffer;
  try {
    bytes = await fs.readFile(file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") throw new CheckpointError(file, "listed in the manifest but missing");
    throw e;
  }
  checkContent(file, entry, bytes.byteLength, createHash("sha256").update(bytes).digest("hex"));
  return bytes;
}

/** Checks every file the manifest lists (streaming, so large files need no memory); throws naming the first bad file. */
export async function verifyCheckpoint(dir: string): Promise<CheckpointManifest> {
  const manifest = await readManifest(dir);
  for (const [name, entry] of Object.entries(manifest.files)) {
    const file = path.join(dir, name);
    let size = 0;
    const hash = createHash("sha256");
    let fh: fs.FileHandle;
    try {
      fh = await fs.open(file, "r");
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") throw new CheckpointError(file, "listed in the manifest but missing");
      throw e;
    }
    try {
      for await (const chunk of fh.createReadStream({ highWaterMark: 1 << 20 })) {
        const b = chunk as Buffer;
        size += b.byteLength;
        hash.update(b);
      }
    } finally {
      await fh.close().catch(() => undefined);
    }
    checkContent(file, entry, size, hash.digest("hex"));
  }
  return manifest;
}

/** Cheap completeness check without hashing: manifest valid and every listed file present with the listed size. */
export async function looksComplete(dir: string): Promise<boolean> {
  try {
    const manifest = await readManifest(dir);
    for (const [name, entry] of Object.entries(manifest.files)) {
      if ((await fs.stat(path.join(dir, name))).size !== entry.size) return false;
    }
    return true;
  } catch {
    return false;
  }
}

function checkContent(file: string, entry: { size: number; sha256: string }, size: number, sha256: string): void {
  if (size < entry.size) throw new CheckpointError(file, `truncated: ${size} bytes on disk, manifest says ${entry.size}`);
  if (size !== entry.size) throw new CheckpointError(file, `size mismatch: ${size} bytes on disk, manifest says ${entry.size}`);
  if (sha256 !== entry.sha256) throw new CheckpointError(file, `checksum mismatch: file is corrupt (sha256 ${sha256}, manifest says ${entry.sha256})`);
}
