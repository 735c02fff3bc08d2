/** AdamW with decoupled weight decay on float32 buffers (torch.optim.AdamW semantics, bias-corrected). */

export interface AdamWOptions {
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
}

/** BERT's pre-training recipe (HF TrainingArguments' defaults differ: eps 1e-8, weightDecay 0). */
export const ADAMW_DEFAULTS: AdamWOptions = { beta1: 0.9, beta2: 0.999, eps: 1e-6, weightDecay: 0.01 };

/** Optimizer state as named buffers, for checkpoints: `<param>.exp_avg`, `<param>.exp_avg_sq`, plus the step count. */
export interface AdamWState {
  step: number;
  tensors: Map<string, Float32Array>;
}

/** One AdamW optimizer over a fixed list of named parameters. */
export class AdamW {
  readonly options: AdamWOptions;
  private readonly m = new Map<string, Float32Array>();
  private readonly v = new Map<string, Float32Array>();
  /** Per-parameter update count (torch keeps one per parameter; parameters without gradient are skipped). */
  private readonly steps = new Map<string, number>();

  constructor(options: Partial<AdamWOptions> = {}) {
    this.options = { ...ADAMW_DEFAULTS, ...options };
    const o = this.options;
    if (!(o.beta1 >= 0 && o.beta1 < 1 && o.beta2 >= 0 && o.beta2 < 1)) throw new Error(`AdamW betas must be in [0, 1), got ${o.beta1}, ${o.beta2}`);
    if (!(o.eps > 0) || !(o.weightDecay >= 0)) throw new Error(`AdamW needs eps > 0 and weightDecay >= 0`);
  }

  /**
   * Updates `param` in place with gradient `grad` at learning rate lr:
   *   p *= 1 - lr*wd (if decay);  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
   *   p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
   */
  update(name: string, param: Float32Array, grad: Float32Array, lr: number, decay: boolean): void {
    if (param.length !== grad.length) throw new Error(`AdamW: '${name}' has ${param.length} values but ${grad.length} gradients`);
    let m = this.m.get(name);
    let v = this.v.get(name);
    if (m === undefined || v === undefined) {
      m = new Float32Array(param.length);
      v = new Float32Array(param.length);
      this.m.set(name, m);
      this.v.set(name, v);
    } else if (m.length !== param.length) {
      throw new Error(`AdamW: '${name}' changed size from ${m.length} to ${param.length}`);
    }
    const t = (this.steps.get(name) ?? 0) + 1;
    this.steps.set(name, t);
    const { beta1: b1, beta2: b2, eps, weightDecay } = this.options;
    const stepSize = lr / (1 - Math.pow(b1, t));
    const rootBc2 = Math.sqrt(1 - Math.pow(b2, t));
    const keep = decay ? 1 - lr * weightDecay : 1;
    for (let i = 0; i < param.length; i++) {
      const g = grad[i];
      const mi = b1 * m[i] + (1 - b1) * g;
      const vi = b2 * v[i] + (1 - b2) * g * g;
      m[i] = mi;
      v[i] = vi;
      param[i] = param[i] * keep - (stepSize * mi) / (Math.sqrt(vi) / rootBc2 + eps);
    }
  }

  /** Snapshot of the state (copies). `step` is the largest per-parameter count. */
  getState(): AdamWState {
    const tensors = new Map<string, Float32Array>();
    let step = 0;
    for (const [name, m] of this.m) {
      tensors.set(`${name}.exp_avg`, Float32Array.from(m));
      tensors.set(`${name}.exp_avg_sq`, Float32Array.from(this.v.get(name) as Float32Array));
      const t = this.steps.get(name) ?? 0;
      tensors.set(`${name}.step`, Float32Array.of(t));
      step = Math.max(step, t);
    }
    return { step, tensors };
  }

  /** Restores a state from getState(); throws on malformed entries. */
  setState(state: AdamWState): void {
    this.m.clear();
    this.v.clear();
    this.steps.clear();
    for (const [key, data] of state.tensors) {
      const match = /^(.*)\.(exp_avg|exp_avg_sq|step)$/.exec(key);
      if (match === null) throw new Error(`AdamW state: unexpected entry '${key}'`);
      const [, name, kind] = match;
      if (kind === "exp_avg") this.m.set(name, Float32Array.from(data));
      else if (kind === "exp_avg_sq") this.v.set(name, Float32Array.from(data));
      else this.steps.set(name, data[0]);
    }
    for (const name of this.m.keys()) {
      const v = this.v.get(name);
      if (v === undefined || v.length !== (this.m.get(name) as Float32Array).length || !this.steps.has(name)) {
        throw new Error(`AdamW state: '${name}' lacks a matching exp_avg_sq or step`);
      }
    }
  }
}
