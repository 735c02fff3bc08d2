#!/usr/bin/env python3
"""Independent check of a ringtrain LoRA adapter saved in Hugging Face PEFT's format.

Reads only what HF would read: the base checkpoint's config.json and model.safetensors, and the adapter's
adapter_config.json and adapter_model.safetensors (safetensors parsed by hand: 8-byte little-endian header length,
JSON header, raw little-endian bytes). It applies the adapter as PEFT does (huggingface/peft):
  - target modules: a Linear named k is wrapped when k is listed or k ends with "." + an entry
    (tuners_utils.check_target_module_exists); modules under modules_to_save are not wrapped;
  - y = x W^T + b + (lora_alpha / r) * (x A^T) B^T, A = lora_A.weight [r, in], B = lora_B.weight [out, r]
    (lora/layer.py; lora_alpha / sqrt(r) with use_rslora);
  - modules_to_save: every module whose name ends with an entry (utils/other.py _set_trainable) takes the saved
    parameters "base_model.model.<module>.<param>"; "classifier" is always one for task_type SEQ_CLS;
and runs BertForSequenceClassification's forward (eval mode) in torch. Every tensor of the adapter file must be used.

Usage: peft_reference.py BASE_DIR ADAPTER_DIR INPUT_JSON -> prints {"logits": [[...]], "merged": {name: max_abs_diff}}
INPUT_JSON: {"input_ids": [[...]], "token_type_ids": [[...]], "attention_mask": [[...]],
             "merged": {name: [[...]]}}  (optional: ringtrain's merged weights W + (alpha/r) B A, HF layout [out, in])
"""
import json
import math
import sys

import torch
from safetensors_f32 import read_safetensors

PREFIX = "base_model.model."


def main():
    base_dir, adapter_dir, input_path = sys.argv[1:4]
    cfg = json.load(open(f"{base_dir}/config.json"))
    base, _ = read_safetensors(f"{base_dir}/model.safetensors")
    peft_cfg = json.load(open(f"{adapter_dir}/adapter_config.json"))
    adapter, meta = read_safetensors(f"{adapter_dir}/adapter_model.safetensors")
    inp = json.load(open(input_path))
    assert peft_cfg["peft_type"] == "LORA" and peft_cfg["task_type"] == "SEQ_CLS", peft_cfg
    assert meta.get("format") == "pt", meta

    r = peft_cfg["r"]
    scale = peft_cfg["lora_alpha"] / (math.sqrt(r) if peft_cfg.get("use_rslora", False) else r)
    targets = peft_cfg["target_modules"]
    modules_to_save = list(peft_cfg.get("modules_to_save") or []) + ["classifier", "score"]
    used = set()

    L = cfg["num_hidden_layers"]
    linears = [f"bert.encoder.layer.{l}.{m}" for l in range(L) for m in (
        "attention.self.query", "attention.self.key", "attention.self.value",
        "attention.output.dense", "intermediate.dense", "output.dense")] + ["bert.pooler.dense", "classifier"]

    # Parameters of BertForSequenceClassification: the base's bert.* plus a classifier (replaced from the adapter).
    params = {k: v for k, v in base.items() if k.startswith("bert.")}
    all_modules = set()
    for k in list(params) + ["classifier.weight", "classifier.bias"]:
        parts = k.split(".")
        for i in range(1, len(parts)):
            all_modules.add(".".join(parts[:i]))
    saved_modules = [m for m in sorted(all_modules) if any(m.endswith(t) for t in modules_to_save)]
    for m in saved_modules:
        own = [k for k in list(params) + ["classifier.weight", "classifier.bias"] if k.startswith(m + ".")]
        lacking = [PREFIX + k for k in own if PREFIX + k not in adapter]
        if lacking:
            raise SystemExit(f"modules_to_save {m}: PEFT's load map wants {lacking}, absent from the adapter")
        for key, value in adapter.items():
            if key.startswith(PREFIX + m + "."):
                params[key[len(PREFIX):]] = value
                used.add(key)
    in_saved = lambda k: any(k == m or k.startswith(m + ".") for m in saved_modules)

    lora = {}
    for k in linears:
        if in_saved(k) or not (k in targets or any(k.endswith("." + t) for t in targets)):
            continue
        a, b = PREFIX + k + ".lora_A.weight", PREFIX + k + ".lora_B.weight"
        if a not in adapter or b not in adapter:
            raise SystemExit(f"PEFT would wrap {k} but the adapter lacks {a} / {b}")
        w = params[k + ".weight"]
        assert adapter[a].shape == (r, w.shape[1]) and adapter[b].shape == (w.shape[0], r), (k, adapter[a].shape, adapter[b].shape, w.shape)
        lora[k] = (adapter[a], adapter[b])
        used.update((a, b))
    unused = sorted(set(adapter) - used)
    if unused:
        raise SystemExit(f"tensors PEFT would not load: {unused}")

    def linear(name, x):
        y = x @ params[name + ".weight"].T + params[name + ".bias"]
        if name in lora:
            a, b = lora[name]
            y = y + scale * ((x @ a.T) @ b.T)
        return y

    def layer_norm(name, x):
        return torch.nn.functional.layer_norm(x, (x.shape[-1],), params[name + ".weight"], params[name + ".bias"], cfg["layer_norm_eps"])

    ids = torch.tensor(inp["input_ids"])
    types = torch.tensor(inp["token_type_ids"])
    mask = torch.tensor(inp["attention_mask"], dtype=torch.float32)
    B, T = ids.shape
    H = cfg["hidden_size"]
    NH = cfg["num_attention_heads"]
    DH = H // NH
    e = params["bert.embeddings.word_embeddings.weight"][ids] + params["bert.embeddings.token_type_embeddings.weight"][types]
    e = e + params["bert.embeddings.position_embeddings.weight"][:T]
    h = layer_norm("bert.embeddings.LayerNorm", e)
    add_mask = (1.0 - mask)[:, None, None, :] * torch.finfo(torch.float32).min
    heads = lambda x: x.view(B, T, NH, DH).permute(0, 2, 1, 3)
    for l in range(L):
        p = f"bert.encoder.layer.{l}"
        q, k, v = (heads(linear(f"{p}.attention.self.{n}", h)) for n in ("query", "key", "value"))
        probs = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(DH) + add_mask, dim=-1)
        ctx = (probs @ v).permute(0, 2, 1, 3).reshape(B, T, H)
        h = layer_norm(f"{p}.attention.output.LayerNorm", linear(f"{p}.attention.output.dense", ctx) + h)
        inter = torch.nn.functional.gelu(linear(f"{p}.intermediate.dense", h))
        h = layer_norm(f"{p}.output.LayerNorm", linear(f"{p}.output.dense", inter) + h)
    pooled = torch.tanh(linear("bert.pooler.dense", h[:, 0]))
    logits = linear("classifier", pooled)

    merged = {}
    for name, values in (inp.get("merged") or {}).items():
        k = name[: -len(".weight")]
        a, b = lora[k]
        w = params[name] + scale * (b @ a)
        merged[name] = float((w - torch.tensor(values)).abs().max())
    print(json.dumps({"logits": logits.tolist(), "merged": merged, "wrapped": sorted(lora), "saved_modules": saved_modules}))


if __name__ == "__main__":
    main()
