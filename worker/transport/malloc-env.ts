/**
 * glibc malloc settings for worker processes that move large gRPC messages.
 *
 * grpc-js allocates a fresh 1–16 MiB Buffer per message (framing on send, reassembly on receive). By default
 * glibc serves such sizes with mmap and unmaps them on free, so every copy into them page-faults. Raising the
 * mmap threshold to its maximum (32 MiB on 64-bit) and the trim threshold keeps those blocks in the heap and
 * reuses warm pages. Must be set in the environment BEFORE the process starts (glibc reads it at startup).
 */
export function workerMallocEnv(): Record<string, string> {
  return {
    MALLOC_MMAP_THRESHOLD_: String(32 * 1024 * 1024),
    MALLOC_TRIM_THRESHOLD_: String(1024 * 1024 * 1024),
    MALLOC_TOP_PAD_: String(64 * 1024 * 1024),
  };
}
