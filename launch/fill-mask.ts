import { loadCheckpoint } from "../shared/checkpoint/checkpoint";
import { latestGoodCheckpoint } from "../shared/checkpoint/run-checkpoints";
import { selectBackend, type BackendName } from "../shared/backend/select";
import { BertTokenizer } from "../shared/tokenizer/bert-tokenizer";
import { Vocab } from "../shared/tokenizer/vocab";
import { BertModel } from "../shared/model/bert";
import { importHfTensors } from "../shared/model/hf";
import { predictMasked } from "../shared/train/eval";
import { ConfigError } from "../shared/config/load";
import * as fs from "node:fs";
import * as path from "node:path";

/** One filled [MASK]: the top candidates with probabilities. */
export interface FillMaskResult {
  text: string;
  position: number;
  candidates: { token: string; prob: number }[];
}

/**
 * `launch fill-mask --model DIR "text with [MASK]"`: top-k predictions of a checkpoint's MLM head. DIR is a
 * checkpoint directory, or a run directory (its latest good checkpoint is used).
 */
export async function fillMask(modelDir: string, texts: string[], opts: { topK: number; backend: string; cased?: boolean }): Promise<FillMaskResult[]> {
  const dir = await resolveCheckpointDir(modelDir);
  await selectBackend(opts.backend as BackendName);
  const ckpt = await loadCheckpoint(dir);
  if (ckpt.config.isDecoder === true) {
    throw new ConfigError(`--model ${dir}: a causal language model (is_decoder, objective causal) predicts the next token, not a [MASK]; fill-mask needs a masked-LM checkpoint`);
  }
  const recorded = ckpt.lowercase;
  if (opts.cased !== undefined && recorded !== undefined && opts.cased === recorded) {
    process.stderr.write(`fill-mask: warning: ${opts.cased ? "--cased" : "--no-cased"}, but ${dir} was trained ${recorded ? "uncased" : "cased"} (tokenizer_config.json)\n`);
  }
  const tokenizer = new BertTokenizer(new Vocab(ckpt.vocab), { lowerCase: opts.cased !== undefined ? !opts.cased : recorded ?? true });
  const model = BertModel.create(ckpt.config, 0);
  importHfTensors(model, ckpt.tensors);
  const results: FillMaskResult[] = [];
  for (const text of texts) {
    const enc = tokenizer.encode(text, undefined, { maxLength: ckpt.config.maxPositionEmbeddings });
    const n = enc.ids.length;
    const batch = {
      batchSize: 1, seqLen: n,
      inputIds: Int32Array.from(enc.ids), tokenTypeIds: Int32Array.from(enc.tokenTypeIds),
      attentionMask: new Int32Array(n).fill(1), mlmLabels: new Int32Array(n).fill(-100),
    };
    const preds = predictMasked(model, batch, opts.topK, tokenizer.specialIds.mask);
    if (preds.length === 0) throw new ConfigError(`fill-mask: "${text}" has no [MASK] token`);
    for (const p of preds) {
      results.push({ text, position: p.position, candidates: p.candidates.map((c) => ({ token: tokenizer.vocab.token(c.tokenId), prob: c.prob })) });
    }
  }
  model.dispose();
  return results;
}

async function resolveCheckpointDir(dir: string): Promise<string> {
  if (fs.existsSync(path.join(dir, "checkpoint.json"))) return dir;
  if (fs.existsSync(path.join(dir, "checkpoints"))) {
    const { checkpoint, warnings } = await latestGoodCheckpoint(dir);
    for (const w of warnings) process.stderr.write(`fill-mask: warning: ${w}\n`);
    if (checkpoint) return checkpoint.dir;
  }
  throw new ConfigError(`--model ${dir}: not a checkpoint directory (no checkpoint.json) nor a run directory with a complete checkpoint`);
}
