/** How gradients and counters are combined across ranks (ARCHITECTURE.md, "Reducer interface"). */

/** One parameter's gradient as flat float32 data, named with the HF parameter name. */
export interface NamedGradient {
  name: string;
  data: Float32Array;
}

/**
 * Sums, in place and across all ranks, every gradient buffer and the counters (e.g. target count, loss sum).
 * All ranks call reduce with the same names, sizes and order for the same step; afterwards every rank holds the sums.
 */
export interface GradientReducer {
  reduce(grads: NamedGradient[], counters: Float32Array, step: number): Promise<void>;
}

/** The reducer of a single process: the local sums already are the global sums. */
export class IdentityReducer implements GradientReducer {
  async reduce(): Promise<void> {}
}

/**
 * N ranks living in one process (e.g. N models trained side by side): each rank calls its member's reduce, the last
 * one to arrive sums all contributions and writes the sums back into every rank's buffers. Sums are taken in rank
 * order in float64, so the result does not depend on arrival order.
 */
export class InProcessReducerGroup {
  private pending: { grads: NamedGradient[]; counters: Float32Array; resolve: () => void; reject: (e: Error) => void }[];
  private pendingStep = -1;
  readonly size: number;

  constructor(size: number) {
    if (!Number.isInteger(size) || size < 1) throw new Error(`reducer group size must be a positive integer, got ${size}`);
    this.size = size;
    this.pending = new Array(size);
  }

  /** The reducer rank `rank` uses. */
  member(rank: number): GradientReducer {
    if (rank < 0 || rank >= this.size) throw new Error(`rank ${rank} outside group of ${this.size}`);
    return { reduce: (grads, counters, step) => this.arrive(rank, grads, counters, step) };
  }

  private arrive(rank: number, grads: NamedGradient[], counters: Float32Array, step: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      if (this.pending[rank] !== undefined) return reject(new Error(`rank ${rank} called reduce twice for step ${this.pendingStep}`));
      if (this.pendingStep === -1) this.pendingStep = step;
      else if (step !== this.pendingStep) return reject(new Error(`rank ${rank} reduces step ${step} while the group is at step ${this.pendingStep}`));
      this.pending[rank] = { grads, counters, resolve, reject };
      if (this.pending.filter((p) => p !== undefined).length === this.size) this.finish();
    });
  }

  private finish(): void {
    const all = this.pending;
    this.pending = new Array(this.size);
    this.pendingStep = -1;
    try {
      const ref = all[0].grads;
      for (const p of all) {
        if (p.grads.length !== ref.length || p.counters.length !== all[0].counters.length) throw new Error("ranks reduce different numbers of buffers");
        p.grads.forEach((g, i) => {
          if (g.name !== ref[i].name || g.data.length !== ref[i].data.length) throw new Error(`buffer ${i} differs between ranks ('${g.name}' vs '${ref[i].name}')`);
        });
      }
      const sumInto = (pick: (r: number) => Float32Array): void => {
        const n = pick(0).length;
        for (let j = 0; j < n; j++) {
          let s = 0;
          for (let r = 0; r < all.length; r++) s += pick(r)[j];
          for (let r = 0; r < all.length; r++) pick(r)[j] = s;
        }
      };
      for (let i = 0; i < ref.length; i++) sumInto((r) => all[r].grads[i].data);
      sumInto((r) => all[r].counters);
      for (const p of all) p.resolve();
    } catch (e) {
      for (const p of all) p.reject(e as Error);
    }
  }
}
