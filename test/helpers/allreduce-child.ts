/**
 * Test child: one real rank. Reads its ChildSpec (JSON) from argv[2], listens on 127.0.0.1:0, prints
 * "ADDRESS host:port", reads the JSON address list from one stdin line, connects, runs its cases and writes a
 * ChildResult to spec.outFile. Exits 0 even when cases fail (failures are data for the test).
 */
import * as fs from "node:fs";
import * as readline from "node:readline";
import { RingCommunicator, type NamedTensor } from "../../worker/collective/ring-communicator";
import { ThreadedRing, sharedFloat32, type Collective } from "../../worker/collective/ring-thread";
import { Rng } from "../../shared/rng";
import { CollectiveError } from "../../worker/collective/collective-error";
import { loadMutualTls } from "../../shared/security/tls";
import { inputTensor, type CaseSpec, type ChildSpec, type ChildResult, type ChildError } from "./allreduce-spec";

async function main(): Promise<void> {
  const spec = JSON.parse(fs.readFileSync(process.argv[2], "utf8")) as ChildSpec;
  const opts = {
    jobId: spec.jobId, token: spec.token, rank: spec.rank, worldSize: spec.worldSize, timeoutMs: spec.timeoutMs,
    chunkBytes: spec.chunkBytes, bucketBytes: spec.bucketBytes, compression: spec.compression, transport: spec.transport,
    tls: loadMutualTls(spec.tls), ...(spec.localSockets !== undefined ? { localSockets: spec.localSockets } : {}),
  };
  const comm: Collective = spec.threaded === true ? await ThreadedRing.listen(opts) : await RingCommunicator.listen(opts);
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
    if (comm instanceof RingCommunicator) result.via = comm.inboundVia;
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
        if (c.gated !== undefined) await gatedAllReduce(comm, tensors, c, spec.rank);
        else await comm.allReduce(tensors, { step: c.step, op: c.op });
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

/**
 * startAllReduce on NaN-filled shared copies of the tensors, then fills and marks them ready one at a time in a
 * seeded random order with random sleeps or busy blocks: a bucket sent before all its tensors are final would
 * carry NaNs into every rank's result. Copies the results back into `tensors`.
 */
async function gatedAllReduce(comm: Collective, tensors: NamedTensor[], c: CaseSpec, rank: number): Promise<void> {
  const g = c.gated!;
  const shared = tensors.map((t) => ({ name: t.name, data: sharedFloat32(t.data.length).fill(NaN) }));
  const pending = comm.startAllReduce(shared, { step: c.step, op: c.op });
  const rng = new Rng(g.seed, rank, c.step);
  const order = shared.map((_, i) => i);
  for (let i = order.length - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [order[i], order[j]] = [order[j], order[i]];
  }
  for (const i of order) {
    if (g.blockMs !== undefined) {
      const until = Date.now() + rng.next() * g.blockMs;
      while (Date.now() < until) { /* the thread is busy, as during a backward pass */ }
    } else {
      await new Promise((r) => setTimeout(r, rng.next() * g.maxDelayMs));
    }
    shared[i].data.set(tensors[i].data);
    pending.ready(i);
  }
  await pending.done;
  shared.forEach((s, i) => tensors[i].data.set(s.data));
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
