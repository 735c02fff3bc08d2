#!/usr/bin/env python3
"""Independent PyTorch reference for ringtrain's pretraining steps (masked or causal language modelling).

Trains, from the same initial weights and on the same global batches, what PyTorch + Hugging Face would:
  - the model is Hugging Face's BertForMaskedLM, written out module by module with HF's module and parameter
    names (transformers/models/bert/modeling_bert.py): embeddings (word + position + token type, LayerNorm),
    self-attention with HF's additive mask (1 - mask) * finfo(float32).min, exact-erf GELU ("gelu"), the MLM head
    (transform dense + GELU + LayerNorm, decoder tied to the word embeddings, its bias the separate
    cls.predictions.bias), and no pooler (BertForMaskedLM is built with add_pooling_layer=False);
  - with is_decoder in config.json, HF's BertLMHeadModel instead: causal attention, labels shifted by one inside;
  - with next_sentence_label in the steps, HF's BertForPreTraining instead: BertModel with its pooler (dense + tanh
    on the [CLS] hidden state), heads BertPreTrainingHeads (cls.predictions as above, cls.seq_relationship a
    Linear(hidden, 2) on the pooled output), loss masked_lm_loss + next_sentence_loss, each a CrossEntropyLoss mean
    (over the masked tokens, over the sequences);
  - the loss is CrossEntropyLoss(ignore_index=-100) averaged over the target tokens of the whole global batch (what
    HF Trainer computes with gradient accumulation and average_tokens_across_devices: the sum over all targets
    divided by their global count; BertForPreTraining's NSP term likewise over the global batch's sequences);
  - torch.nn.utils.clip_grad_norm_ (its return value is the logged grad_norm), then torch.optim.AdamW with HF
    Trainer's parameter groups (Trainer.get_decay_parameter_names: every parameter outside an nn.LayerNorm whose
    name has no "bias" decays), then the LambdaLR of HF's get_linear_schedule_with_warmup (or its cosine and
    constant siblings).

Nothing here is taken from ringtrain: the weights are read from the checkpoint's model.safetensors by hand
(8-byte little-endian header length, JSON header, raw little-endian float32) and loaded by parameter name.

Usage: torch_pretrain_reference.py INIT_CHECKPOINT_DIR INPUT_JSON FINAL_CHECKPOINT_DIR
INPUT_JSON: {"optimizer": {"lr", "beta1", "beta2", "eps", "weight_decay", "grad_clip_norm"},
             "schedule": {"kind": "linear" | "cosine" | "constant", "warmup_steps", "total_steps", "min_lr_ratio"},
             "steps": [{"input_ids": [[...]], "token_type_ids": [[...]], "attention_mask": [[...]], "labels": [[...]],
                        "next_sentence_label": [...] (optional: 0 IsNext, 1 NotNext; given in every step or none)}]}
            (labels as HF takes them: -100 where ignored; a decoder's unshifted, usually input_ids with -100 on padding)
Prints JSON: {"steps": [{"loss", "grad_norm", "lr"} (+ "mlm_loss", "nsp_loss" with next_sentence_label; loss is their sum)],
              "params": {name: {"max_abs_diff", "max_abs", "max_abs_change"}},
              "decay": [names], "no_decay": [names], "not_in_model": {name: max_abs_diff between init and final}}
where max_abs_diff compares the reference's parameters after the steps with FINAL_CHECKPOINT_DIR's.
"""
import json
import math
import sys

import torch
from safetensors_f32 import read_safetensors
from torch import nn


ACTIVATIONS = {
    "gelu": lambda x: nn.functional.gelu(x),  # exact erf form, HF's "gelu"
    "gelu_new": lambda x: nn.functional.gelu(x, approximate="tanh"),
    "relu": nn.functional.relu,
}


class BertEmbeddings(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.word_embeddings = nn.Embedding(c["vocab_size"], c["hidden_size"], padding_idx=c["pad_token_id"])
        self.position_embeddings = nn.Embedding(c["max_position_embeddings"], c["hidden_size"])
        self.token_type_embeddings = nn.Embedding(c["type_vocab_size"], c["hidden_size"])
        self.LayerNorm = nn.LayerNorm(c["hidden_size"], eps=c["layer_norm_eps"])
        self.dropout = nn.Dropout(c["hidden_dropout_prob"])

    def forward(self, input_ids, token_type_ids):
        positions = torch.arange(input_ids.shape[1])[None, :]
        e = self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids) + self.position_embeddings(positions)
        return self.dropout(self.LayerNorm(e))


class BertSelfAttention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.heads = c["num_attention_heads"]
        self.head_size = c["hidden_size"] // self.heads
        self.query = nn.Linear(c["hidden_size"], c["hidden_size"])
        self.key = nn.Linear(c["hidden_size"], c["hidden_size"])
        self.value = nn.Linear(c["hidden_size"], c["hidden_size"])
        self.dropout = nn.Dropout(c["attention_probs_dropout_prob"])

    def split(self, x):
        b, t, _ = x.shape
        return x.view(b, t, self.heads, self.head_size).permute(0, 2, 1, 3)

    def forward(self, h, additive_mask):
        q, k, v = self.split(self.query(h)), self.split(self.key(h)), self.split(self.value(h))
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.head_size) + additive_mask
        probs = self.dropout(torch.softmax(scores, dim=-1))
        ctx = (probs @ v).permute(0, 2, 1, 3)
        return ctx.reshape(ctx.shape[0], ctx.shape[1], -1)


class DenseNormResidual(nn.Module):
    """HF's BertSelfOutput / BertOutput: dense, dropout, LayerNorm(x + residual)."""

    def __init__(self, c, inner):
        super().__init__()
        self.dense = nn.Linear(inner, c["hidden_size"])
        self.LayerNorm = nn.LayerNorm(c["hidden_size"], eps=c["layer_norm_eps"])
        self.dropout = nn.Dropout(c["hidden_dropout_prob"])

    def forward(self, x, residual):
        return self.LayerNorm(self.dropout(self.dense(x)) + residual)


class BertAttention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.self = BertSelfAttention(c)
        self.output = DenseNormResidual(c, c["hidden_size"])

    def forward(self, h, additive_mask):
        return self.output(self.self(h, additive_mask), h)


class BertIntermediate(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.dense = nn.Linear(c["hidden_size"], c["intermediate_size"])
        self.act = ACTIVATIONS[c["hidden_act"]]

    def forward(self, h):
        return self.act(self.dense(h))


class BertLayer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.attention = BertAttention(c)
        self.intermediate = BertIntermediate(c)
        self.output = DenseNormResidual(c, c["intermediate_size"])

    def forward(self, h, additive_mask):
        a = self.attention(h, additive_mask)
        return self.output(self.intermediate(a), a)


class BertEncoder(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.layer = nn.ModuleList([BertLayer(c) for _ in range(c["num_hidden_layers"])])

    def forward(self, h, additive_mask):
        for layer in self.layer:
            h = layer(h, additive_mask)
        return h


class BertPooler(nn.Module):
    """HF BertPooler: dense + tanh on the first ([CLS]) position's hidden state."""

    def __init__(self, c):
        super().__init__()
        self.dense = nn.Linear(c["hidden_size"], c["hidden_size"])

    def forward(self, h):
        return torch.tanh(self.dense(h[:, 0]))


class BertModel(nn.Module):
    """HF BertModel; add_pooling_layer=False as BertForMaskedLM builds it, True as BertForPreTraining does."""

    def __init__(self, c, add_pooling_layer=False):
        super().__init__()
        self.is_decoder = c.get("is_decoder", False)
        self.embeddings = BertEmbeddings(c)
        self.encoder = BertEncoder(c)
        self.pooler = BertPooler(c) if add_pooling_layer else None

    def forward(self, input_ids, token_type_ids, attention_mask):
        # HF get_extended_attention_mask: [B, 1, 1, T], 0 where attended, the dtype's minimum on padding; a decoder's
        # is [B, 1, T, T], query i also masking the keys after i (ModuleUtilsMixin.create_extended_attention_mask_for_decoder)
        keep = attention_mask.to(torch.float32)[:, None, None, :]
        if self.is_decoder:
            seq = torch.arange(input_ids.shape[1])
            keep = (seq[None, None, :] <= seq[None, :, None]).to(torch.float32)[:, None, :, :] * keep
        additive = (1.0 - keep) * torch.finfo(torch.float32).min
        return self.encoder(self.embeddings(input_ids, token_type_ids), additive)


class BertPredictionHeadTransform(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.dense = nn.Linear(c["hidden_size"], c["hidden_size"])
        self.act = ACTIVATIONS[c["hidden_act"]]
        self.LayerNorm = nn.LayerNorm(c["hidden_size"], eps=c["layer_norm_eps"])

    def forward(self, h):
        return self.LayerNorm(self.act(self.dense(h)))


class BertLMPredictionHead(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.transform = BertPredictionHeadTransform(c)
        self.decoder = nn.Linear(c["hidden_size"], c["vocab_size"], bias=False)
        self.bias = nn.Parameter(torch.zeros(c["vocab_size"]))
        self.decoder.bias = self.bias  # HF ties the decoder's bias to cls.predictions.bias

    def forward(self, h):
        return self.decoder(self.transform(h))


class BertOnlyMLMHead(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.predictions = BertLMPredictionHead(c)


class BertForMaskedLM(nn.Module):
    """HF BertForMaskedLM; with is_decoder, HF BertLMHeadModel (same modules; the loss predicts labels[:, 1:])."""

    def __init__(self, c):
        super().__init__()
        self.bert = BertModel(c)
        self.cls = BertOnlyMLMHead(c)
        self.cls.predictions.decoder.weight = self.bert.embeddings.word_embeddings.weight  # tie_word_embeddings

    def forward(self, input_ids, token_type_ids, attention_mask, labels):
        logits = self.cls.predictions(self.bert(input_ids, token_type_ids, attention_mask))
        if self.bert.is_decoder:  # BertLMHeadModel shifts: position i predicts label i + 1
            logits, labels = logits[:, :-1], labels[:, 1:]
        return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100)


class BertPreTrainingHeads(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.predictions = BertLMPredictionHead(c)
        self.seq_relationship = nn.Linear(c["hidden_size"], 2)


class BertForPreTraining(nn.Module):
    """HF BertForPreTraining: MLM + next-sentence prediction; its loss is the sum of the two CrossEntropyLoss means."""

    def __init__(self, c):
        super().__init__()
        self.bert = BertModel(c, add_pooling_layer=True)
        self.cls = BertPreTrainingHeads(c)
        self.cls.predictions.decoder.weight = self.bert.embeddings.word_embeddings.weight  # tie_word_embeddings

    def forward(self, input_ids, token_type_ids, attention_mask, labels, next_sentence_label):
        h = self.bert(input_ids, token_type_ids, attention_mask)
        logits = self.cls.predictions(h)
        seq_logits = self.cls.seq_relationship(self.bert.pooler(h))
        mlm = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100)
        nsp = nn.functional.cross_entropy(seq_logits.reshape(-1, 2), next_sentence_label.reshape(-1))
        return mlm + nsp, mlm, nsp


def parameter_names(model, forbidden):
    """transformers.trainer_pt_utils.get_parameter_names: names of parameters not inside a `forbidden` layer type."""
    result = []
    for name, child in model.named_children():
        result += [f"{name}.{n}" for n in parameter_names(child, forbidden) if not isinstance(child, tuple(forbidden))]
    result += list(model._parameters.keys())
    return result


def hf_schedule(optimizer, kind, warmup, total, min_lr_ratio):
    """transformers' get_linear_schedule_with_warmup, get_cosine_schedule_with_warmup (num_cycles 0.5),
    get_cosine_with_min_lr_schedule_with_warmup (min_lr_rate) and get_constant_schedule_with_warmup."""
    if kind == "linear" and min_lr_ratio != 0:
        raise SystemExit("HF's linear schedule has no floor (min_lr_ratio must be 0)")

    def factor(step):
        if step < warmup:
            return float(step) / float(max(1, warmup))
        if kind == "constant":
            return 1.0
        if kind == "linear":
            return max(0.0, float(total - step) / float(max(1, total - warmup)))
        progress = float(step - warmup) / float(max(1, total - warmup))
        cosine = 0.5 * (1.0 + math.cos(math.pi * 2.0 * 0.5 * progress))
        return cosine * (1.0 - min_lr_ratio) + min_lr_ratio if min_lr_ratio > 0 else max(0.0, cosine)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def main():
    init_dir, input_path, final_dir = sys.argv[1:4]
    torch.set_num_threads(1)
    # The run's model config (its dropout settings) is the final checkpoint's; the shape must be the initial one's.
    cfg = json.load(open(f"{final_dir}/config.json"))
    init_cfg = json.load(open(f"{init_dir}/config.json"))
    shape = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "max_position_embeddings", "type_vocab_size")
    if any(cfg[k] != init_cfg[k] for k in shape):
        raise SystemExit(f"the initial and final checkpoints differ in shape: {init_cfg} vs {cfg}")
    if cfg["hidden_dropout_prob"] != 0 or cfg["attention_probs_dropout_prob"] != 0:
        raise SystemExit("the reference needs dropout 0 (torch's dropout masks are not ringtrain's)")
    inp = json.load(open(input_path))
    opt, sched = inp["optimizer"], inp["schedule"]

    nsp = "next_sentence_label" in inp["steps"][0]
    if any(("next_sentence_label" in b) != nsp for b in inp["steps"]):
        raise SystemExit("next_sentence_label must be given in every step or in none")
    model = BertForPreTraining(cfg) if nsp else BertForMaskedLM(cfg)
    init, _ = read_safetensors(f"{init_dir}/model.safetensors")
    missing, unexpected = model.load_state_dict(init, strict=False)
    tied = {"cls.predictions.decoder.weight", "cls.predictions.decoder.bias"}
    if set(missing) - tied:
        raise SystemExit(f"the checkpoint lacks {sorted(set(missing) - tied)}")
    # What BertForMaskedLM.from_pretrained would report as unused (ringtrain saves a pooler that MLM never trains).
    not_in_model = sorted(unexpected)
    model.train()

    decay_names = [n for n in parameter_names(model, [nn.LayerNorm]) if "bias" not in n]
    named = list(model.named_parameters())
    groups = [
        {"params": [p for n, p in named if n in decay_names], "weight_decay": opt["weight_decay"]},
        {"params": [p for n, p in named if n not in decay_names], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=opt["lr"], betas=(opt["beta1"], opt["beta2"]), eps=opt["eps"])
    scheduler = hf_schedule(optimizer, sched["kind"], sched["warmup_steps"], sched["total_steps"], sched["min_lr_ratio"])

    steps = []
    for batch in inp["steps"]:
        t = {k: torch.tensor(v, dtype=torch.long) for k, v in batch.items()}
        # the rate this update uses: what HF Trainer logs as learning_rate since huggingface/transformers#36973
        # (before, it logged the next step's, read after scheduler.step())
        lr = optimizer.param_groups[0]["lr"]
        parts = {}
        if nsp:
            loss, mlm_loss, nsp_loss = model(t["input_ids"], t["token_type_ids"], t["attention_mask"], t["labels"], t["next_sentence_label"])
            parts = {"mlm_loss": float(mlm_loss), "nsp_loss": float(nsp_loss)}
        else:
            loss = model(t["input_ids"], t["token_type_ids"], t["attention_mask"], t["labels"])
        loss.backward()
        clip = opt["grad_clip_norm"]
        if clip > 0:
            norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), clip))
        else:
            norm = float(torch.norm(torch.stack([p.grad.norm() for p in model.parameters() if p.grad is not None])))
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        steps.append({"loss": float(loss), "grad_norm": norm, "lr": lr, **parts})

    final, _ = read_safetensors(f"{final_dir}/model.safetensors")
    params = {}
    for name, p in model.state_dict().items():
        if name in tied:
            continue
        got = final[name]
        params[name] = {
            "max_abs_diff": float((p - got).abs().max()),
            "max_abs": float(p.abs().max()),
            "max_abs_change": float((p - init[name]).abs().max()),
        }
    print(json.dumps({
        "steps": steps,
        "params": params,
        "decay": sorted(n for n, _ in named if n in decay_names),
        "no_decay": sorted(n for n, _ in named if n not in decay_names),
        "not_in_model": {n: float((final[n] - init[n]).abs().max()) for n in not_in_model},
    }))


if __name__ == "__main__":
    main()
