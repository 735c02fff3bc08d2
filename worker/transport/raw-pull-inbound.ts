/**
 * The inbound (receiving) half of the "http2-raw" transport: the Pull call on the left neighbour made with
 * RawPullClient (HTTP/2 spoken on a net.Socket that reads into one reused buffer) instead of node:http2.
 *
 * Same contract as the node:http2 inbound of Http2PeerTransport: the request carries the job token, the
 * response headers must carry the neighbour's HMAC proof, the body is parsed by GrpcChunkReader (payloads
 * summed or copied straight out of the receive buffer once the collective accepted the header), and the end
 * of the call is reported as onInboundEnd with the same fault kinds and texts.
 */
import { status as GrpcStatus } from "@grpc/grpc-js";
import { splitHostPort } from "../../shared/net/host-port";
import { GrpcChunkReader } from "./grpc-frame-reader";
import { encodePull, grpcFrame, statusName, tokenProof, PROOF_KEY, TOKEN_KEY, type PullRequest } from "./peer-service";
import type { InboundPlan, TransportEvents, TransportFault } from "./peer-transport";
import { RawConnectError, RawPullClient, type CallStatus } from "./raw-pull-client";
import { localSocketName, localSocketsSupported } from "./local-socket";
import type { TlsPem } from "../../shared/security/tls";

const PULL_PATH = "/ringtrain.peer.Peer/Pull";
const RETRY_MS = 50;

/** What a RawPullInbound needs from its transport. */
export interface RawInboundOptions {
  jobId: string;
  token: string;
  rank: number;
  worldSize: number;
  /** Rank of the left neighbour and its "host:port". */
  left: number;
  leftAddress: string;
  chunkBytes: number;
  windowBytes: number;
  maxFrameBytes: number;
  /** Mutual TLS for the connection (plaintext when absent). */
  tls?: TlsPem;
  /** Dial the neighbour's Unix socket first (local-socket.ts; plaintext only): on the same machine it is there. */
  localSockets?: boolean;
  /** The collective's callbacks (looked up on every event). */
  events(): TransportEvents;
  /** False once the transport is failing or closing: events are then swallowed. */
  live(): boolean;
}

function fault(kind: string, detail: string): TransportFault {
  return { side: "left", kind, detail };
}

/** The receiving Pull stream from the left neighbour over a raw-socket HTTP/2 connection. */
export class RawPullInbound {
  private client: RawPullClient | null = null;
  private readonly reader: GrpcChunkReader;
  private stopped = false;
  private ended = false;
  private readonly endWaiters: (() => void)[] = [];
  private readonly peer: string;
  /** How the connection to the left neighbour was made, once it was. */
  connectedVia: "unix" | "tcp" | null = null;

  constructor(private readonly o: RawInboundOptions) {
    this.peer = `rank ${o.left} (${o.leftAddress})`;
    this.reader = new GrpcChunkReader(o.chunkBytes + 4096, {
      onChunk: (m) => {
        if (this.active()) o.events().onChunk(m);
      },
      onChunkHeader: (h, n): InboundPlan => {
        if (!this.active()) return { kind: "skip" };
        const ev = o.events();
        return ev.onChunkHeader !== undefined ? ev.onChunkHeader(h, n) : { kind: "whole" };
      },
    });
  }

  private active(): boolean {
    return !this.stopped && this.o.live();
  }

  /**
   * Connects (retrying while the neighbour is not listening yet) and opens the Pull. Resolves once the
   * neighbour accepted it and proved it holds the job token; rejects with a TransportFault on timeout or a
   * failed proof. A rejected call (trailers-only status) is reported through onInboundEnd, as with node:http2.
   */
  async open(deadline: number, timeoutMs: number): Promise<void> {
    const { jobId, token, rank, worldSize, left, leftAddress } = this.o;
    const pull: PullRequest = { jobId, receiverRank: rank, senderRank: left, worldSize };
    const { host, port } = splitHostPort(leftAddress);
    let accepted: (() => void) | null = null;
    let refused: ((f: TransportFault) => void) | null = null;
    const acceptance = new Promise<void>((resolve, reject) => {
      accepted = resolve;
      refused = reject;
    });
    const events = {
      onResponse: (h: Readonly<Record<string, string>>): void => {
        if (h[PROOF_KEY] !== tokenProof(token, jobId, left)) {
          this.stopped = true; // our cancellation is not the neighbour's failure
          this.reader.stop();
          this.client?.cancel();
          this.markEnded();
          refused?.(fault("auth", `${this.peer} did not prove it holds the job token`));
          return;
        }
        accepted?.();
      },
      onData: (piece: Buffer): void => {
        if (!this.active()) return;
        this.reader.pushTransient(piece);
        if (this.reader.isPaused) this.client?.pause();
      },
      onEnd: (status: CallStatus | null, detail: string): void => this.onEnd(status, detail),
      bodyAlignment: (): number => this.reader.wantedAlignment,
      bodyTarget: (maxBytes: number): Uint8Array | null => (this.active() ? this.reader.directTarget(maxBytes) : null),
    };
    let lastErr = "";
    const request = {
      host, port, peer: this.peer, path: PULL_PATH, headers: [{ name: TOKEN_KEY, value: token, sensitive: true }],
      body: grpcFrame(encodePull(pull)), windowBytes: this.o.windowBytes, maxFrameBytes: this.o.maxFrameBytes,
      ...(this.o.tls !== undefined ? { tls: this.o.tls } : {}),
    };
    const localPath = this.o.localSockets === true && this.o.tls === undefined && localSocketsSupported() ? localSocketName(jobId, leftAddress) : undefined;
    while (this.client === null) {
      if (this.stopped) throw fault("closed", "transport closed while connecting");
      try {
        // the neighbour's Unix socket exists only when it runs in this network namespace: else TCP
        if (localPath !== undefined) {
          this.client = await RawPullClient.connect({ ...request, localPath }, events, deadline).catch(() => null);
          if (this.client !== null) this.connectedVia = "unix";
        }
        if (this.client === null) {
          this.client = await RawPullClient.connect(request, events, deadline);
          this.connectedVia = "tcp";
        }
      } catch (e) {
        if (e instanceof RawConnectError && e.handshake) throw fault("auth", e.message);
        lastErr = e instanceof Error ? e.message : String(e);
        if (Date.now() + RETRY_MS >= deadline) throw fault("timeout", `not reachable within ${timeoutMs} ms: ${lastErr}`);
        await new Promise((r) => setTimeout(r, RETRY_MS));
      }
    }
    if (this.stopped) this.client.cancel();
    return acceptance;
  }

  private onEnd(f: CallStatus | null, detail: string): void {
    this.markEnded();
    if (!this.active()) return;
    const ev = this.o.events();
    if (f === null) ev.onInboundEnd(fault("peer-lost", `stream to us failed: ${detail}`));
    else if (f.code === GrpcStatus.OK) {
      if (!this.reader.atMessageBoundary && !this.reader.failed) ev.onInboundEnd(fault("peer-lost", "stream to us ended inside a message"));
      else ev.onInboundEnd(null);
    } else {
      const kind = f.code === GrpcStatus.UNAUTHENTICATED ? "auth" : f.code === GrpcStatus.ABORTED ? "aborted" : "peer-lost";
      ev.onInboundEnd(fault(kind, `stream to us failed: ${statusName(f.code)} ${f.details}`));
    }
  }

  private markEnded(): void {
    this.ended = true;
    for (const w of this.endWaiters.splice(0)) w();
  }

  /** Stops delivering messages until resume(); the socket stops being read and credit is withheld. */
  pause(): void {
    this.reader.pause();
    this.client?.pause();
  }

  /** Resumes delivery (queued bytes first, on a later turn), then reading the socket. */
  resume(): void {
    this.reader.resume();
    setImmediate(() => {
      if (!this.reader.isPaused) this.client?.resume();
    });
  }

  /** Ignores everything from now on (the collective failed or is closing); the stream stays open. */
  stop(): void {
    this.stopped = true;
    this.reader.stop();
  }

  /** Cancels the stream (RST_STREAM CANCEL) and closes the connection. */
  cancel(): void {
    this.stop();
    this.client?.cancel();
    this.markEnded();
  }

  /** Lets the neighbour's last bytes and trailers through (ignored) for at most graceMs, then cancels. */
  async finish(graceMs: number): Promise<void> {
    this.stop();
    const c = this.client;
    if (c !== null && !this.ended) {
      c.resume();
      let t: NodeJS.Timeout | null = null;
      await Promise.race([new Promise<void>((r) => this.endWaiters.push(r)), new Promise<void>((r) => (t = setTimeout(r, graceMs)))]);
      if (t !== null) clearTimeout(t);
    }
    this.cancel();
  }
}
