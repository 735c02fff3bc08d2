/**
 * The collective thread of a worker: owns the RingCommunicator (and so the peer sockets), so chunks are received,
 * summed and forwarded while the main thread is busy computing the backward pass in tfjs. Requests and replies
 * are in ring-thread-protocol.ts.
 */
import { parentPort, workerData } from "node:worker_threads";
import { loadMutualTls } from "../../shared/security/tls";
import { CollectiveError } from "./collective-error";
import { RingCommunicator, type PendingAllReduce } from "./ring-communicator";
import type { RingThreadData, RingThreadReply, RingThreadRequest, SerializedError } from "./ring-thread-protocol";

function serialize(e: unknown): SerializedError {
  if (e instanceof CollectiveError) {
    return { name: e.name, message: e.message, info: { rank: e.rank, address: e.address, phase: e.phase, step: e.step, reportedBy: e.reportedBy, kind: e.kind }, detail: e.detail };
  }
  return e instanceof Error ? { name: e.name, message: e.message } : { name: "Error", message: String(e) };
}

async function main(): Promise<void> {
  const port = parentPort!;
  const data = workerData as RingThreadData;
  const reply = (m: RingThreadReply): void => port.postMessage(m);
  let ring: RingCommunicator;
  try {
    ring = await RingCommunicator.listen({
      ...data.options, tls: loadMutualTls(data.tlsFiles), onEvent: data.forwardEvents ? (event) => reply({ kind: "event", event }) : undefined,
    });
  } catch (e) {
    reply({ kind: "init-failed", error: serialize(e) });
    return;
  }
  reply({ kind: "listening", address: ring.address });
  const pending = new Map<number, PendingAllReduce>();
  const settle = (id: number, p: Promise<void>): void => {
    p.then(() => reply({ kind: "settled", id }), (e: unknown) => reply({ kind: "settled", id, error: serialize(e) }));
  };
  port.on("message", (m: RingThreadRequest) => {
    switch (m.kind) {
      case "connect":
        settle(m.id, ring.connect(m.addresses));
        break;
      case "start": {
        let p: PendingAllReduce;
        try {
          p = ring.startAllReduce(m.tensors, { step: m.step, op: m.op, exact: m.exact });
        } catch (e) {
          reply({ kind: "settled", id: m.id, error: serialize(e) });
          break;
        }
        if (!m.gated) for (let i = 0; i < m.tensors.length; i++) p.ready(i);
        pending.set(m.id, p);
        settle(m.id, p.done.finally(() => pending.delete(m.id)));
        break;
      }
      case "ready":
        // a bad index is the main thread's bug; the proxy validates first, so this only guards the invariant
        try {
          pending.get(m.id)?.ready(m.index);
        } catch (e) {
          reply({ kind: "settled", id: m.id, error: serialize(e) });
        }
        break;
      case "close":
        settle(m.id, ring.close());
        break;
    }
  });
}

void main();
