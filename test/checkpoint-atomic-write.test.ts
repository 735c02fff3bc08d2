import { test } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { createHash } from "node:crypto";
import { atomicWriteFile } from "../shared/io/atomic-write";

function withTmp(fn: (dir: string) => Promise<void>): () => Promise<void> {
  return async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "aw-"));
    try {
      await fn(dir);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  };
}

test(
  "writes bytes, text and chunked content; reports size and sha256; leaves no temp file",
  withTmp(async (dir) => {
    const target = path.join(dir, "out.bin");
    const w1 = await atomicWriteFile(target, "héllo\n");
    assert.equal(fs.readFileSync(target, "utf8"), "héllo\n");
    assert.deepEqual(w1, { size: 7, sha256: createHash("sha256").update("héllo\n").digest("hex") });

    const w2 = await atomicWriteFile(target, async (sink) => {
      await sink.write(Uint8Array.of(1, 2, 3));
      await sink.write(new Uint8Array(0));
      await sink.write(new Uint8Array(Float32Array.of(1).buffer));
    });
    const expected = Buffer.from([1, 2, 3, 0, 0, 0x80, 0x3f]);
    assert.deepEqual(fs.readFileSync(target), expected);
    assert.deepEqual(w2, { size: 7, sha256: createHash("sha256").update(expected).digest("hex") });
    assert.deepEqual(fs.readdirSync(dir), ["out.bin"]);
  }),
);

test(
  "a producer that throws midway leaves the old file intact and no temp file",
  withTmp(async (dir) => {
    const target = path.join(dir, "model.safetensors");
    fs.writeFileSync(target, "old content");
    await assert.rejects(
      atomicWriteFile(target, async (sink) => {
        await sink.write(new Uint8Array(1 << 16).fill(7));
        throw new Error("serialisation blew up");
      }),
      (e: Error) => e.message.includes(target) && e.message.includes("serialisation blew up"),
    );
    assert.equal(fs.readFileSync(target, "utf8"), "old content");
    assert.deepEqual(fs.readdirSync(dir), ["model.safetensors"]);
  }),
);

test(
  "a missing directory is an error naming the target",
  withTmp(async (dir) => {
    const target = path.join(dir, "nope", "x.json");
    await assert.rejects(atomicWriteFile(target, "{}"), (e: Error) => e.message.startsWith(`atomic write of ${target} failed`));
  }),
);
