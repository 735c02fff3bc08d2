/**
 * A misbehaving peer for the fault tests. It encodes with protobufjs from proto/peer.proto (independently of the
 * communicator's hand-written Chunk codec) and talks plain grpc-js on 127.0.0.1.
 */
import * as net from "node:net";
import * as grpc from "@grpc/grpc-js";
import * as protobuf from "protobufjs";
import { protoPath } from "../../shared/paths";
import { tokenProof, PROOF_KEY, TOKEN_KEY } from "../../worker/transport/peer-service";

const root = protobuf.loadSync(protoPath("peer.proto"));
const PullRequestT = root.lookupType("ringtrain.peer.PullRequest");
const AbortRequestT = root.lookupType("ringtrain.peer.AbortRequest");
const ChunkT = root.lookupType("ringtrain.peer.Chunk");

const ident = (b: Buffer): Buffer => b;

/** Encodes a Chunk message with protobufjs (fields as in peer.proto, camelCase). */
export function encodeChunkPb(fields: Record<string, unknown>): Buffer {
  return Buffer.from(ChunkT.encode(ChunkT.fromObject(fields)).finish());
}

/** Final status of a call the rogue made. */
export interface CallOutcome {
  code: number;
  details: string;
}

function md(token: string | null): grpc.Metadata {
  const m = new grpc.Metadata();
  if (token !== null) m.set(TOKEN_KEY, token);
  return m;
}

/** Opens a Pull on `address` with the given fields; resolves with its status (code -1 = accepted, data flowing). */
export function roguePull(address: string, token: string | null, req: { jobId: string; receiverRank: number; senderRank: number; worldSize: number }): Promise<CallOutcome> {
  const client = new grpc.Client(address, grpc.credentials.createInsecure());
  const body = Buffer.from(PullRequestT.encode(PullRequestT.fromObject(req)).finish());
  return new Promise((resolve) => {
    const call = client.makeServerStreamRequest("/ringtrain.peer.Peer/Pull", ident, ident, body, md(token), { deadline: Date.now() + 5000 });
    let done = false;
    const finish = (o: CallOutcome): void => {
      if (done) return;
      done = true;
      call.cancel();
      client.close();
      resolve(o);
    };
    call.on("data", () => finish({ code: -1, details: "accepted: data flowed" }));
    call.on("error", (e: grpc.ServiceError) => finish({ code: e.code, details: e.details }));
    call.on("metadata", (m: grpc.Metadata) => {
      if (m.get(PROOF_KEY).length > 0) finish({ code: -1, details: "accepted: server sent its proof" });
    });
  });
}

/** Sends an Abort; resolves with the status (0 = OK). */
export function rogueAbort(address: string, token: string | null, req: Record<string, unknown>): Promise<CallOutcome> {
  const client = new grpc.Client(address, grpc.credentials.createInsecure());
  const body = Buffer.from(AbortRequestT.encode(AbortRequestT.fromObject(req)).finish());
  return new Promise((resolve) => {
    client.makeUnaryRequest("/ringtrain.peer.Peer/Abort", ident, ident, body, md(token), { deadline: Date.now() + 5000 }, (e) => {
      client.close();
      resolve(e ? { code: e.code, details: e.details } : { code: 0, details: "OK" });
    });
  });
}

/** Writes raw bytes to a TCP port and waits until the server closes the connection (or 2 s). */
export function garbageTcp(address: string, bytes: Buffer): Promise<"closed" | "timeout"> {
  const [host, port] = address.split(":");
  return new Promise((resolve) => {
    const s = net.connect(Number(port), host, () => s.write(bytes));
    const t = setTimeout(() => {
      s.destroy();
      resolve("timeout");
    }, 2000);
    s.on("data", () => undefined);
    s.on("error", () => undefined);
    s.on("close", () => {
      clearTimeout(t);
      resolve("closed");
    });
  });
}

/**
 * A fake rank: serves Pull to its right neighbour by sending `messages` (raw Chunk frames) and pulls from its
 * left neighbour (reading and discarding) so the real rank's connect() completes.
 */
export class RogueRank {
  private server = new grpc.Server();
  private clients: grpc.Client[] = [];
  address = "";

  constructor(private readonly opts: { jobId: string; token: string; rank: number; worldSize: number; messages: Buffer[] }) {}

  /** Binds on 127.0.0.1:0. */
  async listen(): Promise<string> {
    this.server.addService({
      Pull: { path: "/ringtrain.peer.Peer/Pull", requestStream: false, responseStream: true, requestSerialize: ident, requestDeserialize: ident, responseSerialize: ident, responseDeserialize: ident },
    }, {
      Pull: (call: grpc.ServerWritableStream<Buffer, Buffer>) => {
        const m = new grpc.Metadata();
        m.set(PROOF_KEY, tokenProof(this.opts.token, this.opts.jobId, this.opts.rank));
        call.sendMetadata(m);
        for (const msg of this.opts.messages) call.write(msg);
        call.on("cancelled", () => undefined);
      },
    } as grpc.UntypedServiceImplementation);
    const port = await new Promise<number>((res, rej) => this.server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (e, p) => (e ? rej(e) : res(p))));
    this.address = `127.0.0.1:${port}`;
    return this.address;
  }

  /** Pulls from the real left neighbour at `address`. */
  pullFrom(address: string): void {
    const { jobId, rank, worldSize, token } = this.opts;
    const client = new grpc.Client(address, grpc.credentials.createInsecure());
    this.clients.push(client);
    const body = Buffer.from(PullRequestT.encode(PullRequestT.fromObject({ jobId, receiverRank: rank, senderRank: (rank - 1 + worldSize) % worldSize, worldSize })).finish());
    const call = client.makeServerStreamRequest("/ringtrain.peer.Peer/Pull", ident, ident, body, md(token));
    call.on("data", () => undefined);
    call.on("error", () => undefined);
  }

  /** Stops everything. */
  close(): void {
    this.clients.forEach((c) => c.close());
    this.server.forceShutdown();
  }
}
