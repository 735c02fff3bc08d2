import * as fs from "node:fs";
import * as grpc from "@grpc/grpc-js";

/** PEM files for mutual TLS (config communication.tls): every node presents a certificate signed by the CA. */
export interface TlsFiles {
  ca_file: string;
  cert_file: string;
  key_file: string;
}

/** PEM material as node:tls takes it (secure context options). */
export interface TlsPem {
  ca: Buffer;
  cert: Buffer;
  key: Buffer;
}

/**
 * Loaded mutual-TLS material: grpc-js server and channel credentials that require and check the peer's
 * certificate, and the same PEM files for node:tls (the raw-socket ring transport).
 */
export interface MutualTls {
  server(): grpc.ServerCredentials;
  channel(): grpc.ChannelCredentials;
  readonly pem: TlsPem;
}

/**
 * Reads the CA, certificate and key once; undefined means plaintext (loopback or a trusted network). The
 * server side requires a client certificate signed by the same CA, so a stranger without one cannot connect.
 */
export function loadMutualTls(files: TlsFiles | undefined): MutualTls | undefined {
  if (files === undefined) return undefined;
  const read = (what: keyof TlsFiles): Buffer => {
    try {
      return fs.readFileSync(files[what]);
    } catch (err) {
      throw new Error(`communication.tls.${what}: cannot read ${files[what]} (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
    }
  };
  const ca = read("ca_file");
  const cert = read("cert_file");
  const key = read("key_file");
  return {
    server: () => grpc.ServerCredentials.createSsl(ca, [{ cert_chain: cert, private_key: key }], true),
    channel: () => grpc.credentials.createSsl(ca, key, cert),
    pem: { ca, cert, key },
  };
}
