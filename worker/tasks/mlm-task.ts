/** Pretraining: masked-language modelling on packed sequences, batches built ahead in a worker thread. */
import { modelConfigOf, scheduleOf } from "../../shared/config/derived";
import { accumulationSteps } from "../../shared/config/load";
import { pretrainingDocuments, prepareNspData, preparePretrainingData, tokenizerFromTokens } from "../../shared/pipeline/prepare";
import { DataSharder } from "../../shared/data/sharding";
import { Prefetcher, type NspCorpus, type PackedSequences } from "../../shared/data";
import { buildBatch, maskSettingsFor, type Objective } from "../../shared/data/objective";
import { BertModel } from "../../shared/model/bert";
import { exportHfTensors, importHfTensors, parameterChecksum } from "../../shared/model/hf";
import { trainingFlops } from "../../shared/model/flops";
import { Trainer } from "../../shared/train/trainer";
import type { Batch } from "../../shared/data/batch";
import { evaluateMlm } from "../../shared/train/eval";
import { saveCheckpoint, loadCheckpoint } from "../../shared/checkpoint/checkpoint";
import { pruneCheckpoints } from "../../shared/checkpoint/run-checkpoints";
import type { EvalResult } from "../../proto/coordinator";
import { microBatchPlans, recordPlans, tokensIn } from "./plans";
import type { MicroBatch, Task, TaskContext } from "./task";

/** What the sharding and the FLOP count need of either kind of pretraining data. */
type Sized = { count: number; seqLen: number };

/** Seed of the evaluation masks: fixed, so every evaluation scores the same masked positions. */
const EVAL_EPOCH = 0x7fffffff;

/** Builds the MLM task: tokenizer, packed data, model (resumed when the coordinator says so), prefetcher. */
export async function createMlmTask(ctx: TaskContext): Promise<Task> {
  const { cfg, joined, env } = ctx;
  const tokenizer = tokenizerFromTokens(joined.vocab_tokens, cfg);
  // The objective decides the data: packed sequences (mlm, causal) or sentence pairs (mlm+nsp).
  const docs = pretrainingDocuments(cfg);
  const data: { train: Sized; validation: Sized } = cfg.objective === "mlm+nsp" ? prepareNspData(cfg, docs, tokenizer) : preparePretrainingData(cfg, docs, tokenizer);
  const modelConfig = modelConfigOf(cfg, tokenizer.vocabSize);
  const model = BertModel.create(modelConfig, cfg.seed, { nsp: cfg.objective === "mlm+nsp" });
  const trainer = new Trainer(model, {
    schedule: scheduleOf(cfg),
    adamw: { beta1: cfg.optimizer.beta1, beta2: cfg.optimizer.beta2, eps: cfg.optimizer.eps, weightDecay: cfg.optimizer.weight_decay },
    maxGradNorm: cfg.optimizer.grad_clip_norm,
    dropoutSeed: cfg.seed,
    overlap: cfg.communication.overlap,
  }, ctx.reducer);
  ctx.reducer.describeParameters?.(trainer.params); // shapes for shape-aware compression (PowerSGD)
  if (joined.resume_checkpoint_dir !== "") {
    const ckpt = await loadCheckpoint(joined.resume_checkpoint_dir, { withTrainingState: true });
    importHfTensors(model, ckpt.tensors);
    const state = ckpt.trainingState!;
    trainer.setOptimizerState({ step: Number(state.meta.trainer_step), tensors: new Map([...state.tensors].map(([k, t]) => [k, t.data])) });
    ctx.log(`resumed from ${joined.resume_checkpoint_dir} at step ${joined.start_step}`);
  } else if (cfg.model?.init_from !== undefined) {
    // Continued pretraining: the weights of another run, a fresh optimizer and schedule.
    const init = await loadCheckpoint(cfg.model.init_from);
    if (init.vocab.join("\n") !== joined.vocab_tokens.join("\n")) throw new Error(`model.init_from ${cfg.model.init_from}: its vocabulary differs from the coordinator's`);
    importHfTensors(model, init.tensors);
    ctx.log(`initialised from ${cfg.model.init_from} (step ${init.step})`);
  }

  // Batches are built ahead in a worker thread from the same deterministic sharding the coordinator uses.
  const mask = maskSettingsFor(tokenizer, cfg.seed, { mlmProbability: cfg.data.mlm_probability, wholeWordMask: cfg.data.whole_word_mask });
  const sharder = new DataSharder(data.train.count, cfg.batch.global_batch_size, cfg.seed);
  const micro = cfg.batch.micro_batch_size;
  const accumulation = accumulationSteps(cfg, env.worldSize);
  const planned: number[][] = []; // indices of the prefetched micro-batches, in order
  const objectiveOf = (split: Sized): Objective =>
    cfg.objective === "mlm+nsp" ? { kind: "nsp", data: split as NspCorpus, mask }
      : cfg.objective === "causal" ? { kind: "causal", data: split as PackedSequences }
      : { kind: "mlm", data: split as PackedSequences, mask };
  const prefetcher = new Prefetcher(
    objectiveOf(data.train),
    recordPlans(microBatchPlans(sharder, joined.start_step + 1, cfg.training.max_steps, env.rank, ctx.splits, micro), planned),
    { depth: Math.max(1, cfg.data.prefetch_batches) * accumulation, threads: cfg.data.prefetch_batches > 0 ? 1 : 0 },
  );
  const evalObjective = objectiveOf(data.validation);
  // The batch behind each micro-batch handed out, for beginStep (mlm+nsp weighs NSP by the step's global counts).
  const batchOf = new WeakMap<MicroBatch, Batch>();
  const evalBatch = (idx: number[]) => buildBatch(evalObjective, { indices: idx.filter((x) => x < data.validation.count), epoch: EVAL_EPOCH });

  return {
    summary: `${data.train.count} train / ${data.validation.count} validation sequences of ${data.train.seqLen}`,
    seqLen: data.train.seqLen,
    async nextMicroBatch(): Promise<MicroBatch | undefined> {
      const batch = await prefetcher.next();
      if (batch === undefined) return undefined;
      const mb: MicroBatch = { indices: planned.shift() ?? [], tokens: tokensIn(batch.attentionMask), train: (rowOffset, last) => trainer.accumulate(batch, rowOffset, { last }) };
      batchOf.set(mb, batch);
      return mb;
    },
    // Only mlm+nsp needs the counts first; plain MLM and causal runs train each micro-batch as it arrives.
    beginStep: cfg.objective === "mlm+nsp" ? (micro) => trainer.beginStep(micro.map((mb) => {
      const batch = batchOf.get(mb);
      if (batch === undefined) throw new Error("beginStep: a micro-batch this task did not hand out");
      return batch;
    })) : undefined,
    applyUpdate: () => trainer.applyUpdate(),
    evaluate(split, indices): EvalResult {
      if (split === "test") throw new Error("pretraining has no test split");
      const out: EvalResult = { loss_sum: 0, target_count: 0, correct_count: 0, sequences: indices.length, num_classes: 0, confusion: [] };
      for (let i = 0; i < indices.length; i += micro) {
        const e = evaluateMlm(model, evalBatch(indices.slice(i, i + micro)));
        out.loss_sum += e.lossSum;
        out.target_count += e.numTargets;
        out.correct_count += e.correct;
      }
      return out;
    },
    checksum: () => parameterChecksum(model),
    async save(dir, step) {
      await saveCheckpoint(dir, {
        config: modelConfig,
        tensors: exportHfTensors(model),
        vocab: joined.vocab_tokens,
        padTokenId: tokenizer.specialIds.pad,
        lowercase: cfg.tokenizer.lowercase,
        // with the NSP head (cls.seq_relationship.*) the weights are HF's BertForPreTraining, not BertForMaskedLM
        hfConfigExtra: cfg.objective === "mlm+nsp" ? { architectures: ["BertForPreTraining"] } : undefined,
        step,
        trainingState: {
          tensors: new Map([...trainer.getOptimizerState().tensors].map(([k, v]) => [k, { shape: [v.length], data: v }])),
          meta: { step, trainer_step: trainer.step, data_position: step * cfg.batch.global_batch_size, world_size: env.worldSize, seed: cfg.seed },
        },
      });
      await pruneCheckpoints(joined.run_dir, cfg.training.keep_checkpoints);
    },
    flops: (tokens, targets) => trainingFlops(modelConfig, tokens, data.train.seqLen, targets),
    async close() {
      await prefetcher.close();
      model.dispose();
    },
  };
}
