/**
 * Test child: one real rank. Reads its ChildSpec (JSON) from argv[2], listens on 127.0.0.1:0, prints
 * "ADDRESS host:port", reads the JSON address list from one stdin line, connects, runs its cases and writes a
 * ChildResult to spec.outFile. Exits 0 even when cases fail (failures are data for the test).
 */
import * as fs from "node:fs";
import * as readline from "node:readline";
import { RingCommunicator } from "../../worker/collective/ring-communicator";
import { CollectiveError } from "../../worker/collective/collective-error";
import { inputTensor, type ChildSpec, type ChildResult, type ChildError } from "./allreduce-spec";

async function main(): Promise<void> {
  const spec = JSON.parse(fs.readFileSync(process.argv[2], "utf8")) as ChildSpec;
  const comm = await RingCommunicator.listen({
    jobId: spec.jobId, token: spec.token, rank: spec.rank, worldSize: spec.worldSize, timeoutMs: spec.timeoutMs,
    chunkBytes: spec.chunkBytes, bucketBytes: spec.bucketBytes, compression: spec.compression, transport: spec.transport,
  });
  process.stdout.write(`ADDRESS ${comm.address}\n`);
  const rl = readline.createInterface({ input: process.stdin });
  const lines: string[] = [];
  let wake: (() => void) | null = null;
  rl.on("line", (l) => {
    lines.push(l);
    wake?.();
  });
  const nextLine = async (): Promise<string> => {
    while (lines.length === 0) await new Promise<void>((r) => (wake = r));
    return lines.shift()!;
  };
  const line = await nextLine();
  const result: ChildResult = { rank: spec.rank, address: comm.address, cases: [] };
  const t0 = Date.now();
  try {
    await comm.connect(JSON.parse(line) as string[]);
    for (const c of spec.cases) {
      if (c.stall) {
        process.stdout.write(`STALLED ${c.step}\n`);
        await new Promise(() => undefined);
      }
      if (c.gate) {
        process.stdout.write(`GATE ${c.step}\n`);
        await nextLine();
      }
      const tensors = c.tensors.map((t, i) => ({ name: t.name, data: inputTensor(c, spec.rank, i) }));
      if (c.announce) process.stdout.write(`STARTED ${c.step}\n`);
      const start = Date.now();
      try {
        await comm.allReduce(tensors, { step: c.step, op: c.op });
        result.cases.push({ ok: true, tensors: tensors.map((t) => Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength).toString("base64")) });
      } catch (e) {
        const tensorsAfter = tensors.map((t) => Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength).toString("base64"));
        result.cases.push({ ok: false, error: toChildError(e, Date.now() - start), tensorsAfter });
        break;
      }
    }
  } catch (e) {
    result.cases.push({ ok: false, error: toChildError(e, Date.now() - t0) });
  }
  fs.writeFileSync(spec.outFile, JSON.stringify(result));
  rl.close();
  await comm.close();
  process.exit(0);
}

function toChildError(e: unknown, elapsedMs: number): ChildError {
  if (e instanceof CollectiveError) {
    return { name: e.name, message: e.message, rank: e.rank, address: e.address, phase: String(e.phase), step: e.step, kind: e.kind, elapsedMs };
  }
  return { name: e instanceof Error ? e.name : "unknown", message: e instanceof Error ? e.message : String(e), elapsedMs };
}

main().catch((e: unknown) => {
  process.stderr.write(`allreduce-child fatal: ${e instanceof Error ? e.stack : String(e)}\n`);
  process.exit(2);
});
