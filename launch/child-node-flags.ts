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

/**
 * V8 heap flags for worker processes (`training.worker_initial_old_space_mb`; 0 passes none). A training step
 * leaves megabytes of short-lived gradient and parameter copies behind; with node's small initial old space V8
 * answers with a full collection nearly every step, whose main-thread part lands in the step and whose concurrent
 * marking threads compete with the other workers for the cores (docs/PERFORMANCE.md, "Garbage collection").
 */
export function workerHeapFlags(initialOldSpaceMb: number): string[] {
  return initialOldSpaceMb > 0 ? [`--initial-old-space-size=${initialOldSpaceMb}`] : [];
}
