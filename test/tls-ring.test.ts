/**
 * The ring over mutual TLS (communication.tls) with real processes on loopback: the default http2-socket transport
 * (node:tls under our raw-socket HTTP/2) sums exactly, interoperates with grpc-js over TLS, and a rank whose
 * certificate another CA signed is refused by both neighbours, which fail at once (a failed handshake is not
 * retried) naming it.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { startChildren, ringSpecs } from "./helpers/allreduce-harness";
import { referenceSum, decodeTensor, type CaseSpec } from "./helpers/allreduce-spec";
import { makePki, opensslUnavailable, type TestPki } from "./helpers/pki";

const TENSORS = [{ name: "a", length: 20_011 }, { name: "b", length: 3 }, { name: "empty", length: 0 }, { name: "c", length: 300_007 }];

const tlsOf = (p: TestPki): { ca_file: string; cert_file: string; key_file: string } => ({ ca_file: p.ca, cert_file: p.cert, key_file: p.key });

test("TLS ring (http2-socket, grpc, http2-socket): sums exact and bit-identical; raw-socket TLS and grpc-js TLS interoperate", async (t) => {
  const missing = opensslUnavailable();
  if (missing !== undefined) return t.skip(missing);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "tls-ring-"));
  try {
    const pki = makePki(dir, "job");
    const cases: CaseSpec[] = [
      { step: 0, op: "sum", tensors: TENSORS, seed: 3, values: "int" },
      { step: 1, op: "avg", tensors: TENSORS, seed: 4, values: "int" },
    ];
    const kinds = ["http2-socket", "grpc", "http2-socket"] as const;
    // 64 KiB chunks: the 300k-element tensor goes through the streaming path (direct reads into place included)
    const specs = ringSpecs(3, { jobId: "tls-ring", token: "tok", timeoutMs: 20_000, chunkBytes: 65_536, cases, tls: tlsOf(pki) })
      .map((s, r) => ({ ...s, transport: kinds[r] }));
    const res = await (await startChildren(specs)).results();
    for (const ci of [0, 1]) {
      const all = res.map((r, rank) => {
        assert.ok(r, `rank ${rank} wrote a result`);
        const c = r.cases[ci];
        if (!c.ok) assert.fail(`rank ${rank} case ${ci} failed: ${c.error.message}`);
        return c.tensors.map(decodeTensor);
      });
      for (let r = 1; r < 3; r++) all[r].forEach((x, i) => assert.deepEqual(Buffer.from(x.buffer), Buffer.from(all[0][i].buffer), `rank ${r} tensor ${i} bits`));
      all[0].forEach((got, ti) => {
        const ref = referenceSum(cases[ci], 3, ti);
        for (let i = 0; i < ref.length; i++) {
          const want = Math.fround(ci === 0 ? ref[i] : Math.fround(ref[i]) / 3);
          if (got[i] !== want) assert.fail(`case ${ci} tensor ${ti}[${i}]: got ${got[i]}, want ${want}`);
        }
      });
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("TLS ring: a rank whose certificate another CA signed is refused; its neighbours fail within the deadline naming it", async (t) => {
  const missing = opensslUnavailable();
  if (missing !== undefined) return t.skip(missing);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "tls-ring-bad-"));
  try {
    const good = makePki(dir, "job");
    const stranger = makePki(dir, "stranger");
    const cases: CaseSpec[] = [{ step: 0, op: "sum", tensors: TENSORS, seed: 5, values: "int" }];
    const timeoutMs = 4000;
    const specs = ringSpecs(3, { jobId: "tls-bad", token: "tok", timeoutMs, chunkBytes: 65_536, cases, tls: tlsOf(good) })
      .map((s) => (s.rank === 1 ? { ...s, tls: tlsOf(stranger) } : s));
    const started = Date.now();
    const res = await (await startChildren(specs)).results();
    assert.ok(Date.now() - started < timeoutMs + 15_000, "every rank gave up within the deadline");
    for (const [rank, r] of res.entries()) {
      assert.ok(r, `rank ${rank} wrote a result`);
      const c = r.cases[0];
      assert.ok(c !== undefined && !c.ok, `rank ${rank} must fail, got ${JSON.stringify(c)}`);
    }
    // rank 2 pulls from rank 1, whose server certificate it does not trust
    const r2 = res[2]!.cases[0];
    assert.ok(!r2.ok);
    assert.match(r2.error.message, /rank 1 \(127\.0\.0\.1:\d+\)/);
    assert.match(r2.error.message, /TLS: .*certificate/i);
    // a failed handshake is not retried until the deadline: it will not heal
    assert.equal(r2.error.kind, "auth");
    assert.ok(r2.error.elapsedMs < timeoutMs, `rank 2 failed after ${r2.error.elapsedMs} ms`);
    // rank 1 pulls from rank 0, which does not accept rank 1's client certificate
    const r1 = res[1]!.cases[0];
    assert.ok(!r1.ok);
    assert.match(r1.error.message, /rank 0 \(127\.0\.0\.1:\d+\)/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
