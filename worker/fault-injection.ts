/**
 * Failpoints for fault-tolerance tests and drills, off unless their environment variable is set:
 * RINGTRAIN_TEST_HANG_AT=RANK:STEP makes that rank's main thread spin forever at the start of that step's
 * compute (alive, heartbeats flowing from their thread, but no progress) — the "stuck kernel" case.
 * RINGTRAIN_TEST_SLOW_RANK=RANK:FACTOR makes that rank's forward+backward passes take FACTOR times as long (it
 * blocks for the difference without using the CPU) — a slower machine, for load-balancing tests and drills.
 */
const hangAt = parseHang(process.env.RINGTRAIN_TEST_HANG_AT);

const slow = parseSlow(process.env.RINGTRAIN_TEST_SLOW_RANK);

function parseSlow(value: string | undefined): { rank: number; factor: number } | undefined {
  const m = /^(\d+):(\d+(?:\.\d+)?)$/.exec(value ?? "");
  return m && Number(m[2]) >= 1 ? { rank: Number(m[1]), factor: Number(m[2]) } : undefined;
}

/** Blocks (FACTOR - 1) x `computeMs` when the RINGTRAIN_TEST_SLOW_RANK failpoint names this rank. */
export function slowDownIfInjected(rank: number, computeMs: number): void {
  if (slow === undefined || slow.rank !== rank) return;
  const ms = (slow.factor - 1) * computeMs;
  if (ms > 0) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

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
