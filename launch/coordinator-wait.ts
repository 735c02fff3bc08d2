import * as net from "node:net";
import { splitHostPort } from "../shared/net/host-port";

/**
 * Waits until HOST:PORT accepts TCP connections, retrying refused connections and unresolvable names (pods and
 * machines start in any order; node 0 prepares data before it listens, and DNS records appear late), up to
 * `timeoutMs`. Resolves true when reachable, false on timeout.
 */
export async function waitForCoordinator(address: string, timeoutMs: number, onRetry?: (why: string) => void): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  let announced = false;
  while (Date.now() < deadline) {
    const error = await probeCoordinator(address, Math.max(1, Math.min(5_000, deadline - Date.now())));
    if (error === undefined) return true;
    if (!announced) onRetry?.(`coordinator ${address} not reachable yet (${error}); waiting up to ${Math.round(timeoutMs / 1000)} s`);
    announced = true;
    await new Promise((r) => setTimeout(r, 500));
  }
  return false;
}

/** One TCP connection attempt to HOST:PORT: undefined when it was accepted, else why not (an errno code or "connect timed out"). */
export function probeCoordinator(address: string, timeoutMs: number): Promise<string | undefined> {
  const { host, port } = splitHostPort(address);
  return new Promise<string | undefined>((resolve) => {
    const socket = net.connect({ host, port });
    socket.setTimeout(timeoutMs);
    socket.once("connect", () => {
      socket.destroy();
      resolve(undefined);
    });
    socket.once("timeout", () => {
      socket.destroy();
      resolve("connect timed out");
    });
    socket.once("error", (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
  });
}

/** A running coordinator watch: `lost` resolves with a reason once the coordinator stayed unreachable too long. */
export interface CoordinatorWatch {
  lost: Promise<string>;
  stop(): void;
}

/**
 * Probes the coordinator every `intervalMs` on a node that does not host it; `lost` resolves once no probe has
 * succeeded for `timeoutMs`. Why: workers notice a lost coordinator themselves, but a worker that cannot run (stopped,
 * hung in native code) never does, and its launcher would wait for it forever after the job has ended.
 */
export function watchCoordinator(address: string, intervalMs: number, timeoutMs: number): CoordinatorWatch {
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let resolveLost!: (why: string) => void;
  const lost = new Promise<string>((resolve) => (resolveLost = resolve));
  let lastOk = Date.now();
  const tick = async (): Promise<void> => {
    const error = await probeCoordinator(address, Math.max(100, Math.min(intervalMs, 5_000)));
    if (stopped) return;
    const now = Date.now();
    if (error === undefined) lastOk = now;
    else if (now - lastOk >= timeoutMs) {
      resolveLost(`coordinator ${address} unreachable for ${now - lastOk} ms (${error})`);
      return;
    }
    timer = setTimeout(() => void tick(), intervalMs);
  };
  timer = setTimeout(() => void tick(), intervalMs);
  return {
    lost,
    stop: () => {
      stopped = true;
      clearTimeout(timer);
    },
  };
}
