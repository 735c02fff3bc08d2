/**
 * An HTTP/2 server on a plain net.Server (cleartext, prior knowledge) or, with `tls`, a tls.Server that requires
 * a client certificate signed by the job's CA (ALPN "h2"), whose connections are H2ServerConnection (raw-socket
 * HTTP/2, large zero-copy DATA frames): the peer port of the "http2-socket" ring transport.
 */
import * as net from "node:net";
import * as tls from "node:tls";
import type { TlsPem } from "../../shared/security/tls";
import { H2ServerConnection, type H2ServerConnectionOptions } from "./h2-server-connection";

/** Options of an H2Server: those of every connection, plus where to bind and, optionally, mutual TLS. */
export interface H2ServerOptions extends H2ServerConnectionOptions {
  host: string;
  port: number;
  /** Mutual TLS: serve only clients whose certificate the CA signed (plaintext when absent). */
  tls?: TlsPem;
  /**
   * Also serve on this Unix socket (an abstract name, local-socket.ts), given the bound TCP port; plaintext only.
   * Best effort: when the name cannot be bound, the server stays TCP-only and neighbours dial TCP.
   */
  localName?: (port: number) => string;
}

/** Listening HTTP/2 server; requests go to `opts.onRequest`. */
export class H2Server {
  private constructor(
    private readonly server: net.Server,
    private readonly conns: Set<H2ServerConnection>,
    readonly port: number,
    /** The Unix socket server (localName), when it could bind. */
    private readonly local: net.Server | null,
  ) {}

  /** Whether the server also listens on its Unix socket name. */
  get servesLocal(): boolean {
    return this.local !== null;
  }

  /** Binds `host:port` (0 = any free port); rejects with an error naming `opts.self` and the address. */
  static async listen(opts: H2ServerOptions): Promise<H2Server> {
    const conns = new Set<H2ServerConnection>();
    const serve = (sock: net.Socket): void => {
      sock.on("error", () => undefined);
      const c = new H2ServerConnection(sock, opts);
      conns.add(c);
      sock.on("close", () => conns.delete(c));
    };
    const server: net.Server = opts.tls === undefined
      ? net.createServer({ noDelay: true }, serve)
      : tls.createServer({ ...opts.tls, requestCert: true, rejectUnauthorized: true, ALPNProtocols: ["h2"], noDelay: true }, serve);
    // a client that fails the handshake (no or a foreign certificate) is dropped by node:tls; its side reports it
    server.on("tlsClientError", () => undefined);
    const port = await new Promise<number>((resolve, reject) => {
      const onErr = (e: Error): void => reject(new Error(`${opts.self}: cannot bind peer server on ${opts.host}:${opts.port}: ${e.message}`));
      server.once("error", onErr);
      server.listen(opts.port, opts.host, () => {
        server.removeListener("error", onErr);
        server.on("error", () => undefined);
        resolve((server.address() as net.AddressInfo).port);
      });
    });
    let local: net.Server | null = null;
    if (opts.localName !== undefined && opts.tls === undefined) {
      const candidate = net.createServer(serve);
      local = await new Promise<net.Server | null>((resolve) => {
        candidate.once("error", () => resolve(null));
        candidate.listen(opts.localName!(port), () => {
          candidate.on("error", () => undefined);
          resolve(candidate);
        });
      });
    }
    return new H2Server(server, conns, port, local);
  }

  /**
   * Stops accepting, sends GOAWAY on every connection (open streams run to their end) and resolves once all
   * connections are gone, destroying those still open after `graceMs`.
   */
  close(graceMs: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        for (const c of this.conns) c.destroy();
        resolve();
      }, graceMs);
      this.local?.close();
      this.server.close(() => {
        clearTimeout(t);
        resolve();
      });
      for (const c of this.conns) c.close();
    });
  }
}
