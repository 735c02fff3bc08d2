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
  /**
   * Optional: the shape of every parameter whose gradient reduce() will see (trainer.params). Reducers that
   * compress by shape (PowerSGD reshapes each weight to rows x cols) need it; the others ignore it.
   */
  describeParameters?(params: readonly ParameterShape[]): void;
  /**
   * Optional: sums a few counts (e.g. a step's target counts) across all ranks, in place and exactly, in a collective
   * of their own. Objectives that average two losses over their own global counts (mlm+nsp) need them before the
   * step's first backward pass, long before reduce(). All ranks call it with the same length for the same step.
   * A reducer without it cannot train such objectives (the Trainer refuses).
   */
  sumCounts?(values: Float32Array, step: number): Promise<void>;
}

/** A parameter's name (as in NamedGradient) and shape. */
export interface ParameterShape {
  name: string;
  shape: readonly number[];
}

/**
 * A reduction started before the gradients exist, so that each one travels as soon as the backward pass has
 * produced it (overlap of communication with computation). Indices are positions in the list given to begin().
 */
export interface PendingReduction {
  /** Gradient `index` holds its final local value; it must not change until `done` settles. */
  gradientReady(index: number): void;
  /** The counters hold their final local values. */
  countersReady(): void;
  /** Resolves once every gradient and the counters hold the global sums. */
  readonly done: Promise<void>;
}

/** A reducer that can start before the gradients are final (see PendingReduction). */
export interface OverlappingReducer extends GradientReducer {
  /** Starts the reduction of `grads` and `counters` for `step`; they must live in memory the reducer can read later (SharedArrayBuffer for a threaded ring). */
  begin(grads: NamedGradient[], counters: Float32Array, step: number): PendingReduction;
}

/** Whether `r` can overlap its reduction with the backward pass. */
export function canOverlap(r: GradientReducer): r is OverlappingReducer {
  return typeof (r as Partial<OverlappingReducer>).begin === "function";
}

/** The reducer of a single process: the local sums already are the global sums. */
export class IdentityReducer implements OverlappingReducer {
  async reduce(): Promise<void> {}

  /** One process: the local counts are the global ones. */
  async sumCounts(): Promise<void> {}

  /** Nothing to send: done once the gradients and counters are all final. */
  begin(grads: NamedGradient[]): PendingReduction {
    const left = new Uint8Array(grads.length + 1).fill(1);
    let missing = grads.length + 1;
    let finish!: () => void;
    let fail!: (e: Error) => void;
    const done = new Promise<void>((resolve, reject) => {
      finish = resolve;
      fail = reject;
    });
    const mark = (i: number): void => {
      if (left[i] !== 1) return fail(new Error(`IdentityReducer: ${i === grads.length ? "counters" : `gradient ${i}`} marked ready twice or out of range`));
      left[i] = 0;
      if (--missing === 0) finish();
    };
    return { gradientReady: (i) => mark(i >= 0 && i < grads.length ? i : -1), countersReady: () => mark(grads.length), done };
  }
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
  /** The members' sumCounts() meet here: a collective of its own, as on the ring. */
  private counts: InProcessReducerGroup | undefined;

  constructor(size: number) {
    if (!Number.isInteger(size) || size < 1) throw new Error(`reducer group size must be a positive integer, got ${size}`);
    this.size = size;
    this.pending = new Array(size);
  }

  /** The reducer rank `rank` uses. */
  member(rank: number): GradientReducer {
    if (rank < 0 || rank >= this.size) throw new Error(`rank ${rank} outside group of ${this.size}`);
    return {
      reduce: (grads, counters, step) => this.arrive(rank, grads, counters, step),
      sumCounts: (values, step) => (this.counts ??= new InProcessReducerGroup(this.size)).arrive(rank, [], values, step),
    };
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
