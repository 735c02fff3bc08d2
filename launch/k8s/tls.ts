import type { RunConfig } from "../../shared/config/schema";

/**
 * Mutual TLS in the pods: every pod mounts one Secret (`--tls-secret NAME`) at TLS_MOUNT, and the config the pods
 * read (the ConfigMap) points communication.tls at its files. The key names are those of a cert-manager
 * Certificate's Secret (and of `kubectl create secret tls` plus `ca.crt`).
 */
export const TLS_MOUNT = "/etc/ringtrain/tls";

/** Secret key holding each communication.tls file (the file keeps the key's name under TLS_MOUNT). */
export const TLS_SECRET_KEYS: Readonly<Record<keyof NonNullable<RunConfig["communication"]["tls"]>, string>> = {
  ca_file: "ca.crt",
  cert_file: "tls.crt",
  key_file: "tls.key",
};

/** communication.tls as the pods read it: every file inside the mounted Secret. */
export function podTlsFiles(): NonNullable<RunConfig["communication"]["tls"]> {
  return {
    ca_file: `${TLS_MOUNT}/${TLS_SECRET_KEYS.ca_file}`,
    cert_file: `${TLS_MOUNT}/${TLS_SECRET_KEYS.cert_file}`,
    key_file: `${TLS_MOUNT}/${TLS_SECRET_KEYS.key_file}`,
  };
}
