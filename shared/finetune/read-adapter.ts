/**
 * Reading a saved adapter directory in either of its layouts: HF PEFT's (ringtrain_adapter.json beside PEFT's
 * adapter_config.json, tensor names with PEFT's prefix) or ringtrain's own (adapter_config.json version 1, as every
 * adapter before the PEFT layout and every method without a PEFT equivalent). Files are read through the checkpoint
 * manifest, so each is verified against its recorded checksum.
 */
import * as path from "node:path";
import { readVerifiedFile, type CheckpointManifest } from "../checkpoint/manifest";
import { decodeSafetensors, tensorToFloat32 } from "../checkpoint/safetensors";
import type { BertConfig } from "../model/config";
import type { HostTensor } from "../model/hf";
import type { PeftSettings } from "../peft/settings";
import { ADAPTER_CONFIG_FILE, ADAPTER_MODEL_FILE, adapterConfigSchema, parseConfigFile, RINGTRAIN_ADAPTER_FILE, ringtrainAdapterSchema, settingsOfAdapter, type AdapterConfig } from "./adapter-config";
import { fromPeftKey, peftConfigMismatches, peftLoraConfigSchema } from "./peft-format";

/** An adapter's description: ringtrain's fields, the settings they give, and which layout the directory has. */
export interface AdapterDescription {
  config: AdapterConfig;
  settings: PeftSettings;
  /** "hf-peft": PEFT's files and tensor names; "ringtrain": ringtrain's adapter_config.json and names. */
  layout: "hf-peft" | "ringtrain";
  /** The file the description was read from (for messages). */
  file: string;
}

function listed(manifest: CheckpointManifest, name: string): boolean {
  return Object.prototype.hasOwnProperty.call(manifest.files, name);
}

/**
 * Reads the description of the adapter in `dir`: ringtrain_adapter.json when the manifest lists it (HF PEFT layout),
 * else adapter_config.json in ringtrain's format. Throws naming the file and field when invalid. `what` names the
 * directory in messages (e.g. "--adapter runs/x").
 */
export async function readAdapterDescription(dir: string, manifest: CheckpointManifest, what: string): Promise<AdapterDescription> {
  if (listed(manifest, RINGTRAIN_ADAPTER_FILE)) {
    const file = path.join(dir, RINGTRAIN_ADAPTER_FILE);
    const config = parseConfigFile(ringtrainAdapterSchema, (await readVerifiedFile(dir, manifest, RINGTRAIN_ADAPTER_FILE)).toString("utf8"), file);
    return { config, settings: settingsOfAdapter(config, file), layout: "hf-peft", file };
  }
  if (!listed(manifest, ADAPTER_CONFIG_FILE)) {
    throw new Error(`${what}: ${dir} holds no ${ADAPTER_CONFIG_FILE} (a complete classifier checkpoint is given with --model alone)`);
  }
  const file = path.join(dir, ADAPTER_CONFIG_FILE);
  const config = parseConfigFile(adapterConfigSchema, (await readVerifiedFile(dir, manifest, ADAPTER_CONFIG_FILE)).toString("utf8"), file);
  return { config, settings: settingsOfAdapter(config, file), layout: "ringtrain", file };
}

/**
 * The adapter's tensors under ringtrain's names (HF layouts, as saved). In the PEFT layout, PEFT's adapter_config.json
 * must agree with the recorded settings (r, alpha, dropout, target modules, modules_to_save) for a base of shape
 * `cfg`, and every tensor name must carry PEFT's prefix. Every tensor the description lists must be present.
 */
export async function readAdapterTensors(dir: string, manifest: CheckpointManifest, desc: AdapterDescription, cfg: BertConfig): Promise<Map<string, HostTensor>> {
  if (desc.layout === "hf-peft") {
    const peftFile = path.join(dir, ADAPTER_CONFIG_FILE);
    if (!listed(manifest, ADAPTER_CONFIG_FILE)) throw new Error(`${dir}: ${RINGTRAIN_ADAPTER_FILE} without HF PEFT's ${ADAPTER_CONFIG_FILE}`);
    const peft = parseConfigFile(peftLoraConfigSchema, (await readVerifiedFile(dir, manifest, ADAPTER_CONFIG_FILE)).toString("utf8"), peftFile);
    const problems = peftConfigMismatches(cfg, peft, desc.settings);
    if (problems.length > 0) throw new Error(`${peftFile} disagrees with ${desc.file}: ${problems.join("; ")}`);
  }
  const file = path.join(dir, ADAPTER_MODEL_FILE);
  const st = decodeSafetensors(await readVerifiedFile(dir, manifest, ADAPTER_MODEL_FILE), file);
  const missing = desc.config.tensors.filter((n) => !st.tensors.has(n));
  if (missing.length > 0) throw new Error(`${file}: lacks tensors listed in ${path.basename(desc.file)}: ${missing.join(", ")}`);
  const out = new Map<string, HostTensor>();
  for (const [k, t] of st.tensors) {
    const name = desc.layout === "hf-peft" ? fromPeftKey(k, file) : k;
    out.set(name, { shape: t.shape, data: tensorToFloat32(t, `${file}: ${k}`) });
  }
  return out;
}
