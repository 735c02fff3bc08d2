/**
 * Fine-tuning: a classifier (head + the configured method) over a pretrained base checkpoint, trained on labelled
 * examples. Only the method's trainable parameters are differentiated and all-reduced; frozen ones never travel.
 */
import { createHash } from "node:crypto";
import { scheduleOf } from "../../shared/config/derived";
import { tokenizerFromTokens } from "../../shared/pipeline/prepare";
import { DataSharder } from "../../shared/data/sharding";
import { makeClassificationBatch, type ClassificationBatch, type LabelledSequences } from "../../shared/data/labelled";
import { parameterChecksum } from "../../shared/model/hf";
import { trainingFlops } from "../../shared/model/flops";
import { Trainer } from "../../shared/train/trainer";
import { classificationObjective, evaluateClassification } from "../../shared/train/classification-objective";
import { pruneCheckpoints } from "../../shared/checkpoint/run-checkpoints";
import { prepareClassificationData } from "../../shared/finetune/prepare";
import { loadBaseModel } from "../../shared/finetune/base-model";
import { buildClassifier } from "../../shared/finetune/load";
import { saveClassifier } from "../../shared/finetune/save";
import { restoreClassifier } from "../../shared/finetune/resume";
import type { PeftClassifier } from "../../shared/peft/classifier";
import { peftSettingsOf } from "../../shared/peft/settings";
import { countClassifierParams, formatParamCounts } from "../../shared/peft/specs";
import type { EvalResult } from "../../proto/coordinator";
import { COUNTERS_TENSOR } from "../tfjs/ring-reducer";
import { microBatchPlans, tokensIn } from "./plans";
import type { MicroBatch, Task, TaskContext } from "./task";

/** Builds the classification task: base model, labelled splits, classifier, trainer over its trainable parameters. */
export async function createClassificationTask(ctx: TaskContext): Promise<Task> {
  const { cfg, joined, env } = ctx;
  const f = cfg.finetune;
  if (f === undefined) throw new Error("task: classification needs a finetune section");
  const tokenizer = tokenizerFromTokens(joined.vocab_tokens, cfg);
  const base = await loadBaseModel(f.base_model);
  if (base.checkpoint.vocab.join("\n") !== joined.vocab_tokens.join("\n")) throw new Error(`the coordinator's vocabulary differs from ${base.dir}'s`);
  const data = prepareClassificationData(cfg, tokenizer);
  const settings = peftSettingsOf(f, data.labels.length);
  const promptInitIds = f.method === "prompt" && f.prompt.init_text !== undefined ? tokenizer.encode(f.prompt.init_text, undefined, { addSpecialTokens: false }).ids : undefined;
  const model = buildClassifier(base.checkpoint, settings, f.init, cfg.seed, { promptInitIds });
  const trainer = new Trainer<ClassificationBatch>(model.base, {
    schedule: scheduleOf(cfg),
    adamw: { beta1: cfg.optimizer.beta1, beta2: cfg.optimizer.beta2, eps: cfg.optimizer.eps, weightDecay: cfg.optimizer.weight_decay },
    maxGradNorm: cfg.optimizer.grad_clip_norm,
    dropoutSeed: cfg.seed,
    overlap: cfg.communication.overlap,
    params: model.trainable,
    objective: classificationObjective(model),
  }, ctx.reducer);
  ctx.reducer.describeParameters?.(trainer.params); // shapes for shape-aware compression (PowerSGD)
  if (joined.resume_checkpoint_dir !== "") {
    // The classifier was built as at the start (frozen weights from the base); the trained ones and the moments come back.
    const resumed = await restoreClassifier(joined.resume_checkpoint_dir, model, base.checksum);
    trainer.setOptimizerState(resumed.optimizer);
    ctx.log(`resumed from ${joined.resume_checkpoint_dir} at step ${joined.start_step}`);
  }
  const counts = countClassifierParams(model.base.config, settings);
  const gradBytes = trainer.grads.reduce((a, g) => a + g.data.byteLength, 0) + trainer.counters.byteLength;
  ctx.log(`${f.method} fine-tuning (${f.init} init) of ${base.dir}: ${formatParamCounts(counts)}`);
  ctx.log(`all-reduced per step: ${gradBytes} bytes (${trainer.grads.length} trainable tensors + ${COUNTERS_TENSOR})`);

  const sharder = new DataSharder(data.train.count, cfg.batch.global_batch_size, cfg.seed);
  const micro = cfg.batch.micro_batch_size;
  const plans = microBatchPlans(sharder, joined.start_step + 1, cfg.training.max_steps, env.rank, ctx.splits, micro);
  const rowsOf = (split: "validation" | "test"): LabelledSequences => (split === "test" ? data.test : data.validation);

  return {
    summary: `${data.labels.length} classes (${data.labels.join(", ")}); ${data.train.count} of ${data.trainAvailable} training labels kept ` +
      `(label_fraction ${f.label_fraction}), ${data.validation.count} validation, ${data.test.count} test examples of ${data.train.seqLen} tokens`,
    seqLen: data.train.seqLen,
    async nextMicroBatch(): Promise<MicroBatch | undefined> {
      const p = plans.next();
      if (p.done === true) return undefined;
      const batch = makeClassificationBatch(data.train, p.value.indices);
      return { indices: Array.from(p.value.indices), tokens: tokensIn(batch.attentionMask), train: (rowOffset, last) => trainer.accumulate(batch, rowOffset, { last }) };
    },
    applyUpdate: () => trainer.applyUpdate(),
    evaluate(split, indices): EvalResult {
      const rows = rowsOf(split);
      const k = data.labels.length;
      const confusion = new Float64Array(k * k);
      const out: EvalResult = { loss_sum: 0, target_count: 0, correct_count: 0, sequences: 0, num_classes: k, confusion: [] };
      const valid = indices.filter((i) => i < rows.count);
      for (let i = 0; i < valid.length; i += micro) {
        const batch = makeClassificationBatch(rows, valid.slice(i, i + micro));
        const e = evaluateClassification(model, batch, confusion);
        out.loss_sum += e.lossSum;
        out.correct_count += e.correct;
        out.target_count += batch.batchSize;
        out.sequences += batch.batchSize;
      }
      out.confusion = Array.from(confusion);
      return out;
    },
    checksum: () => parameterChecksum(model.base) + ":" + extrasChecksum(model),
    async save(dir, step) {
      await saveClassifier(dir, model, {
        labels: data.labels, maxSeqLen: cfg.data.max_seq_len, lowercase: cfg.tokenizer.lowercase,
        baseDir: base.dir, baseChecksum: base.checksum, vocab: joined.vocab_tokens, padTokenId: tokenizer.specialIds.pad, step,
        training: {
          optimizer: trainer.getOptimizerState().tensors,
          meta: {
            step, trainer_step: trainer.step, data_position: step * cfg.batch.global_batch_size, world_size: env.worldSize, seed: cfg.seed,
            method: f.method, base_model: base.dir, base_model_sha256: base.checksum,
          },
        },
      });
      await pruneCheckpoints(joined.run_dir, cfg.training.keep_checkpoints);
    },
    // The encoder's FLOPs; the head's (hidden x classes per sequence) are negligible.
    flops: (tokens) => trainingFlops(model.base.config, tokens, data.train.seqLen, 0),
    async close() {
      model.dispose();
    },
  };
}

/** SHA-256 over the head and method parameters (the base model's is parameterChecksum). */
function extrasChecksum(model: PeftClassifier): string {
  const h = createHash("sha256");
  for (const s of model.extraSpecs) {
    const d = model.param(s.name).dataSync() as Float32Array;
    h.update(s.name);
    h.update(new Uint8Array(d.buffer, d.byteOffset, d.byteLength));
  }
  return h.digest("hex");
}
