/**
 * Node flags for the processes `launch` starts (workers, benchmark ranks).
 *
 * grpc-js sets the TLS ServerName to the target host even when that is an IP address, which node reports as
 * deprecation DEP0123 once per thread that opens a TLS channel: eight lines of "DeprecationWarning" in a
 * two-worker TLS job, about nothing the user can change. The certificate is still checked against the IP
 * (subjectAltName IP entries); only the SNI hint is meaningless. So that one warning is silenced, where this
 * node knows `--disable-warning` (20.11+); every other warning still prints.
 */
export function childNodeFlags(): string[] {
  return process.allowedNodeEnvironmentFlags.has("--disable-warning") ? ["--disable-warning=DEP0123"] : [];
}
