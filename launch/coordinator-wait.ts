import * as net from "node:net";

/**
 * Waits until HOST:PORT accepts TCP connections, retrying refused connections and unresolvable names (pods and
 * machines start in any order; node 0 prepares data before it listens, and DNS records appear late), up to
 * `timeoutMs`. Resolves true when reachable, false on timeout.
 */
export async function waitForCoordinator(address: string, timeoutMs: number, onRetry?: (why: string) => void): Promise<boolean> {
  const colon = address.lastIndexOf(":");
  const host = address.slice(0, colon).replace(/^\[(.*)\]$/, "$1");
  const port = Number(address.slice(colon + 1));
  const deadline = Date.now() + timeoutMs;
  let announced = false;
  while (Date.now() < deadline) {
    const error = await new Promise<string | undefined>((resolve) => {
      const socket = net.connect({ host, port });
      socket.setTimeout(Math.max(1, Math.min(5_000, deadline - Date.now())));
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
    if (error === undefined) return true;
    if (!announced) onRetry?.(`coordinator ${address} not reachable yet (${error}); waiting up to ${Math.round(timeoutMs / 1000)} s`);
    announced = true;
    await new Promise((r) => setTimeout(r, 500));
  }
  return false;
}
