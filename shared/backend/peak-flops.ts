import * as tf from "@tensorflow/tfjs";

/**
 * The backend's own peak matmul throughput (FLOP/s): the best of a few square float32 products, the
 * denominator of model-FLOPs utilisation. The best, not the median: a peak is what the backend reaches when
 * nothing else runs, and a measurement taken while other processes start up must not lower it (MFU above 1 would
 * follow). Takes a fraction of a second.
 */
export function measurePeakFlops(size = 768, repeats = 5): number {
  const a = tf.randomNormal([size, size]);
  const b = tf.randomNormal([size, size]);
  try {
    tf.matMul(a, b).dispose(); // warm-up: kernel selection, allocation
    const times: number[] = [];
    for (let i = 0; i < repeats; i++) {
      const t0 = performance.now();
      const c = tf.matMul(a, b);
      c.dataSync();
      times.push(performance.now() - t0);
      c.dispose();
    }
    const ms = Math.min(...times);
    return (2 * size ** 3) / (ms / 1000);
  } finally {
    a.dispose();
    b.dispose();
  }
}
