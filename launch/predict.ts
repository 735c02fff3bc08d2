/**
 * `launch predict --model DIR [--adapter DIR] FILE`: classify new text with a fine-tuned classifier. FILE is JSONL
 * (`text`, optional `text_pair`, `id`), CSV or TSV with a header (same columns), any of them gzipped, or plain text
 * (one example per non-blank line). Labels in the file, when present, are reported beside the predictions (and an accuracy).
 */
import * as fs from "node:fs";
import * as tf from "@tensorflow/tfjs";
import { selectBackend, type BackendName } from "../shared/backend/select";
import { loadCorpus, parseCorpusSpec } from "../shared/data/corpus";
import { DEFAULT_FIELDS, type RecordFields } from "../shared/data/fields";
import { readUtf8 } from "../shared/data/text-reader";
import type { Document } from "../shared/data/document";
import { encodeText } from "../shared/data/labelled";
import { loadClassifier } from "../shared/finetune/load";
import { ConfigError } from "../shared/config/load";

/** One prediction: the input's id, the predicted label, the class probabilities and logits. */
export interface Prediction {
  id: string;
  label: string;
  /** The file's label, when it had one that is one of the model's classes. */
  expected?: string;
  /** The file's label when it is not one of the model's classes: such examples are left out of the accuracy. */
  expectedNotAClass?: string;
  probs: Record<string, number>;
  logits: number[];
}

/**
 * Reads the examples of FILE with the corpus readers, by its extension (.jsonl/.ndjson, .csv, .tsv, each also .gz:
 * x.csv.gz is CSV), so predict reads a file as training did; any other file is plain text, one example per
 * non-blank line.
 */
export function readExamples(file: string, fields: RecordFields = DEFAULT_FIELDS): Document[] {
  if (!fs.existsSync(file)) throw new ConfigError(`predict: input file not found: ${file}`);
  if (fs.statSync(file).isDirectory()) throw new ConfigError(`predict: ${file} is a folder; give one input file`);
  const spec = parseCorpusSpec(file);
  if (spec.kind !== "text") {
    try {
      return loadCorpus(spec, fields);
    } catch (e) {
      const message = (e as Error).message;
      // a file with other key or column names: say how to name them
      throw /field "|column/.test(message) ? new ConfigError(`predict: ${message} (name the file's keys or columns with --text-field, --text-pair-field, --label-field)`) : e;
    }
  }
  const docs: Document[] = [];
  readUtf8(file).split("\n").forEach((line, i) => {
    if (line.trim() !== "") docs.push({ id: `${file}:${i + 1}`, text: line.replace(/\r$/, "") });
  });
  if (docs.length === 0) throw new ConfigError(`predict: ${file} holds no text`);
  return docs;
}

/** Classifies every example of `file` in batches of `batchSize`. */
export async function predictFile(opts: { model: string; adapter?: string; file: string; backend: string; batchSize: number; fields?: RecordFields }): Promise<Prediction[]> {
  await selectBackend(opts.backend as BackendName);
  const examples = readExamples(opts.file, opts.fields);
  const loaded = await loadClassifier(opts.model, opts.adapter).catch((e: Error) => {
    throw new ConfigError(`predict: ${e.message}`);
  });
  const { model, tokenizer, labels, maxSeqLen } = loaded;
  const fields = opts.fields ?? DEFAULT_FIELDS;
  for (const warning of [labelFieldNotFound(examples, opts.file, fields), pairFieldNotFound(examples, opts.file, fields), unknownGoldLabels(examples, labels)]) {
    if (warning !== undefined) process.stderr.write(`predict: warning: ${warning}\n`);
  }
  const out: Prediction[] = [];
  try {
    for (let start = 0; start < examples.length; start += opts.batchSize) {
      const part = examples.slice(start, start + opts.batchSize);
      const enc = part.map((d) => encodeText(tokenizer, d.text, d.textPair, maxSeqLen));
      const S = Math.max(...enc.map((e) => e.ids.length));
      const B = part.length;
      const input = { batchSize: B, seqLen: S, inputIds: new Int32Array(B * S).fill(tokenizer.specialIds.pad), tokenTypeIds: new Int32Array(B * S), attentionMask: new Int32Array(B * S) };
      enc.forEach((e, r) => {
        input.inputIds.set(e.ids, r * S);
        input.tokenTypeIds.set(e.tokenTypeIds, r * S);
        input.attentionMask.fill(1, r * S, r * S + e.ids.length);
      });
      const [logits, probs] = tf.tidy(() => {
        const z = model.logits(input, { training: false });
        return [Float32Array.from(z.dataSync() as Float32Array), Float32Array.from(tf.softmax(z).dataSync() as Float32Array)];
      });
      const K = labels.length;
      part.forEach((d, r) => {
        let best = 0;
        for (let k = 1; k < K; k++) if (logits[r * K + k] > logits[r * K + best]) best = k;
        const p: Prediction = { id: d.id, label: labels[best], probs: {}, logits: Array.from(logits.subarray(r * K, (r + 1) * K)) };
        labels.forEach((l, k) => (p.probs[l] = probs[r * K + k]));
        if (d.label !== undefined && labels.includes(d.label)) p.expected = d.label;
        else if (d.label !== undefined) p.expectedNotAClass = d.label;
        out.push(p);
      });
    }
  } finally {
    model.dispose();
  }
  return out;
}

/**
 * The warning for a --label-field the user named (not the default) that no example of `file` has: without it the
 * accuracy the flag asked for would just be missing from the output, as for unlabelled input.
 */
export function labelFieldNotFound(examples: readonly Document[], file: string, fields: RecordFields): string | undefined {
  if (fields.label === DEFAULT_FIELDS.label || examples.some((d) => d.label !== undefined)) return undefined;
  return `--label-field ${fields.label}: none of the ${examples.length} examples of ${file} has a ${JSON.stringify(fields.label)} key/column, so no accuracy is computed`;
}

/** The warning for a --text-pair-field the user named that no example of `file` has: each text is then classified alone. */
export function pairFieldNotFound(examples: readonly Document[], file: string, fields: RecordFields): string | undefined {
  if (fields.textPair === DEFAULT_FIELDS.textPair || examples.some((d) => d.textPair !== undefined)) return undefined;
  return `--text-pair-field ${fields.textPair}: none of the ${examples.length} examples of ${file} has a ${JSON.stringify(fields.textPair)} key/column, so each text is classified alone`;
}

/**
 * The warning for gold labels in the input that are not classes of the model (undefined when there are none): a
 * prediction can never match them, so counting them wrong would understate accuracy without saying why.
 */
export function unknownGoldLabels(examples: readonly Document[], labels: readonly string[]): string | undefined {
  const known = new Set(labels);
  const unknown = new Map<string, number>();
  for (const d of examples) if (d.label !== undefined && !known.has(d.label)) unknown.set(d.label, (unknown.get(d.label) ?? 0) + 1);
  if (unknown.size === 0) return undefined;
  const total = [...unknown.values()].reduce((a, b) => a + b, 0);
  const list = [...unknown].map(([l, n]) => `${JSON.stringify(l)} (${n})`).join(", ");
  return `${total} example(s) have a label that is not one of the model's classes (${labels.join(", ")}): ${list}; they are left out of the accuracy (their label is kept as expectedNotAClass)`;
}
