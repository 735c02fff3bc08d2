import * as net from "node:net";
import { splitHostPort } from "../shared/net/host-port";

/** What a probe of a silent worker's peer port found. */
export type Liveness =
  /** Connection refused or reset: no process listens there any more. */
  | "dead"
  /** The kernel accepted the connection but the process never answered the HTTP/2 handshake: stopped or stuck. */
  | "stalled"
  /** No answer at all within the timeout: host down or network partitioned. */
  | "unreachable"
  /** The process answered: alive and serving (its heartbeats are lost elsewhere). */
  | "responsive";

const HTTP2_PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1");
/** An empty SETTINGS frame: length 0, type 4, flags 0, stream 0. */
const EMPTY_SETTINGS = Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0]);

/**
 * Tells a dead worker from a stalled one: connects to its gRPC peer port and sends the HTTP/2 client preface.
 * A live process answers with its SETTINGS at once; a stopped (SIGSTOP) or blocked one has its connection
 * accepted by the kernel but never answers; a dead one refuses the connection.
 */
export function probeLiveness(address: string, timeoutMs: number): Promise<Liveness> {
  const { host, port } = splitHostPort(address);
  return new Promise<Liveness>((resolve) => {
    let connected = false;
    let settled = false;
    const socket = net.connect({ host, port });
    const finish = (result: Liveness): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(result);
    };
    const timer = setTimeout(() => finish(connected ? "stalled" : "unreachable"), timeoutMs);
    socket.on("connect", () => {
      connected = true;
      socket.write(Buffer.concat([HTTP2_PREFACE, EMPTY_SETTINGS]));
    });
    socket.on("data", () => finish("responsive"));
    socket.on("error", (err: NodeJS.ErrnoException) => {
      if (err.code === "ECONNREFUSED" || err.code === "ECONNRESET") finish("dead");
      else if (err.code === "EHOSTUNREACH" || err.code === "ENETUNREACH" || err.code === "ETIMEDOUT") finish("unreachable");
      else finish(connected ? "dead" : "unreachable");
    });
    socket.on("close", () => finish(connected ? "dead" : "unreachable"));
  });
}
