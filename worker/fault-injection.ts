/**
 * Failpoints for fault-tolerance tests and drills, off unless their environment variable is set:
 * RINGTRAIN_TEST_HANG_AT=RANK:STEP makes that rank's main thread spin forever at the start of that step's
 * compute (alive, heartbeats flowing from their thread, but no progress) — the "stuck kernel" case.
 */
const hangAt = parseHang(process.env.RINGTRAIN_TEST_HANG_AT);

function parseHang(value: string | undefined): { rank: number; step: number } | undefined {
  const m = /^(\d+):(\d+)$/.exec(value ?? "");
  return m ? { rank: Number(m[1]), step: Number(m[2]) } : undefined;
}

/** Spins forever when the RINGTRAIN_TEST_HANG_AT failpoint names this rank and step. */
export function hangIfInjected(rank: number, step: number): void {
  if (hangAt === undefined || hangAt.rank !== rank || hangAt.step !== step) return;
  for (;;) {
    // Deliberately blocks the main thread (and its event loop) for good.
  }
}
