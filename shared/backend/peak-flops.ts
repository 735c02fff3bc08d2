import * as tf from "@tensorflow/tfjs";

/**
 * The backend's own matmul throughput (FLOP/s): the median of a few square float32 products, the
 * denominator of model-FLOPs utilisation. Takes a fraction of a second.
 */
export function measurePeakFlops(size = 512, repeats = 5): number {
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
    times.sort((x, y) => x - y);
    const ms = times[Math.floor(times.length / 2)];
    return (2 * size ** 3) / (ms / 1000);
  } finally {
    a.dispose();
    b.dispose();
  }
}
