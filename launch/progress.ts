import { SingleBar } from "cli-progress";
import type { StepMetrics } from "../coordinator/metrics";

/**
 * One progress line for the run: step/total, loss, tokens/s, MFU, ETA. A live bar (cli-progress) on a
 * terminal; on a pipe or log file, one plain line every `logEvery` steps (training.log_interval_steps, like HF's
 * logging_steps), on every evaluation and on the last step. metrics.jsonl records every step regardless.
 */
export class ProgressReporter {
  private readonly bar: SingleBar | undefined;
  private readonly startedMs = Date.now();
  private last: StepMetrics | undefined;
  private lastEval: StepMetrics["eval"];
  private readonly throughput: number[] = [];
  private readonly mfus: number[] = [];

  /**
   * `accuracyLabel` names what the evaluation's accuracy counts: masked-token accuracy for MLM, next-token accuracy
   * for a causal model (classification runs say accuracy and macro-F1 themselves).
   */
  constructor(private readonly total: number, private readonly startStep: number, private readonly enabled: boolean, private readonly logEvery = 1, private readonly accuracyLabel = "masked-token accuracy") {
    if (enabled && process.stderr.isTTY) {
      this.bar = new SingleBar({
        format: "step {value}/{total} |{bar}| loss {loss} | {tps} tok/s | MFU {mfu} | ETA {eta_formatted}{evaltext}",
        stream: process.stderr,
        hideCursor: true,
        etaBuffer: 20,
      });
      this.bar.start(total, startStep, { loss: "-", tps: "-", mfu: "-", evaltext: "" });
    }
  }

  /** Shows one finished step. */
  update(m: StepMetrics): void {
    this.last = m;
    this.throughput.push(m.tokens_per_s);
    this.mfus.push(m.mfu);
    if (m.eval) this.lastEval = m.eval;
    const evalText = this.lastEval ? ` | val loss ${this.lastEval.loss.toFixed(3)} acc ${(this.lastEval.accuracy * 100).toFixed(1)}%` : "";
    if (this.bar) {
      this.bar.update(m.step, { loss: lossText(m), tps: Math.round(m.tokens_per_s), mfu: pct(m.mfu), evaltext: evalText });
    } else if (this.enabled && (m.step % this.logEvery === 0 || m.eval || m.step === this.total)) {
      const done = m.step - this.startStep;
      const elapsed = (Date.now() - this.startedMs) / 1000;
      const eta = done > 0 ? (elapsed / done) * (this.total - m.step) : NaN;
      process.stderr.write(
        `step ${m.step}/${this.total} | loss ${lossText(m)} | ${Math.round(m.tokens_per_s)} tok/s | MFU ${pct(m.mfu)} | ETA ${formatSeconds(eta)}${m.eval ? evalText : ""}\n`,
      );
    }
  }

  /** Ends the live bar. */
  finish(): void {
    this.bar?.stop();
  }

  /** Final figures: last loss, median throughput and MFU, last evaluation. */
  summary(): string {
    if (!this.last) return "no step completed";
    const e = this.lastEval;
    // Classification evaluations carry a macro-F1 (and perplexity means nothing there).
    const ev = e === undefined ? "" : e.macro_f1 !== undefined
      ? `, validation loss ${e.loss.toFixed(3)} (accuracy ${(e.accuracy * 100).toFixed(1)}%, macro-F1 ${(e.macro_f1 * 100).toFixed(1)}%)`
      : `, validation loss ${e.loss.toFixed(3)} (perplexity ${(e.perplexity ?? NaN).toFixed(1)}, ${this.accuracyLabel} ${(e.accuracy * 100).toFixed(1)}%)`;
    return `step ${this.last.step}, loss ${lossText(this.last)}${ev}, median ${Math.round(median(this.throughput))} tokens/s, MFU ${pct(median(this.mfus))}`;
  }
}

function median(xs: number[]): number {
  const s = xs.slice().sort((a, b) => a - b);
  return s.length === 0 ? NaN : s[Math.floor(s.length / 2)];
}

function pct(x: number): string {
  return `${(x * 100).toFixed(1)}%`;
}

function formatSeconds(s: number): string {
  if (!Number.isFinite(s)) return "-";
  const m = Math.floor(s / 60);
  return m > 0 ? `${m}m${Math.round(s % 60)}s` : `${Math.round(s)}s`;
}

/** The step's loss as shown: the objective's loss, and with mlm+nsp the NSP loss beside it (HF's total is their sum). */
function lossText(m: StepMetrics): string {
  return m.nsp_loss !== undefined && Number.isFinite(m.nsp_loss) ? `${m.loss.toFixed(3)} + nsp ${m.nsp_loss.toFixed(3)}` : m.loss.toFixed(3);
}
