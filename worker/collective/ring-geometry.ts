/**
 * Geometry of the ring algorithm on one bucket: how L elements split into N segments and each segment into
 * sub-chunks of at most `chunkElems` elements. Every rank computes the same numbers from (L, N, chunkElems).
 */

/** First element of segment g of a bucket of L elements split over N ranks (first L mod N segments get +1). */
export function segmentStart(L: number, N: number, g: number): number {
  const base = Math.floor(L / N);
  return g * base + Math.min(g, L % N);
}

/** Element count of segment g. */
export function segmentLength(L: number, N: number, g: number): number {
  return Math.floor(L / N) + (g < L % N ? 1 : 0);
}

/** Number of sub-chunks of segment g (0 for an empty segment). */
export function chunkCount(L: number, N: number, g: number, chunkElems: number): number {
  return Math.ceil(segmentLength(L, N, g) / chunkElems);
}

/** Segment that rank `rank` receives at `hop` of reduce-scatter (its left neighbour's running sum). */
export function reduceScatterSegment(rank: number, N: number, hop: number): number {
  return (((rank - hop - 1) % N) + N) % N;
}

/** Segment that rank `rank` receives at `hop` of all-gather (final values). */
export function allGatherSegment(rank: number, N: number, hop: number): number {
  return (((rank - hop) % N) + N) % N;
}
