/**
 * Reader and writer for the safetensors format (https://huggingface.co/docs/safetensors):
 *
 *   [u64 little-endian N][N bytes UTF-8 JSON header][data region]
 *
 * The header maps tensor names to { dtype, shape, data_offsets: [begin, end] } (offsets relative to the
 * data region) plus an optional "__metadata__" map of string to string. Files are untrusted input: the reader
 * checks every length and offset before touching data, so a crafted file is refused, never over-read.
 */
import * as fs from "node:fs/promises";
import * as os from "node:os";
import { atomicWriteFile, type WrittenFile } from "../io/atomic-write";
import { bf16ToFloat32, f16ToFloat32 } from "../codecs/half";
import { isJsonObject, JsonSyntaxError, parseStrictJson, type JsonValue } from "./strict-json";

/** Element types of the format, with their size in bytes. */
export const DTYPE_SIZE = {
  BOOL: 1,
  U8: 1,
  I8: 1,
  F8_E5M2: 1,
  F8_E4M3: 1,
  I16: 2,
  U16: 2,
  F16: 2,
  BF16: 2,
  I32: 4,
  U32: 4,
  F32: 4,
  F64: 8,
  I64: 8,
  U64: 8,
} as const;

export type Dtype = keyof typeof DTYPE_SIZE;

/** Typed array holding a tensor's elements; F16 / BF16 / F8 are raw bit patterns. */
export type TensorData =
  | Uint8Array
  | Int8Array
  | Int16Array
  | Uint16Array
  | Int32Array
  | Uint32Array
  | Float32Array
  | Float64Array
  | BigInt64Array
  | BigUint64Array;

/** One tensor: element type, shape (row-major; [] is a scalar) and its elements. */
export interface SafetensorsTensor {
  dtype: Dtype;
  shape: number[];
  data: TensorData;
}

/** A whole file's content. */
export interface SafetensorsFile {
  tensors: Map<string, SafetensorsTensor>;
  metadata: Record<string, string>;
}

/** Where one tensor lives, from a validated header; begin/end are relative to the data region. */
export interface TensorLayout {
  name: string;
  dtype: Dtype;
  shape: number[];
  begin: number;
  end: number;
}

/** A validated header: layouts in data order, metadata, and where the data region starts in the file. */
export interface SafetensorsHeader {
  headerLength: number;
  dataStart: number;
  tensors: TensorLayout[];
  metadata: Record<string, string>;
}

/** Default cap on the JSON header size; the reference implementation uses the same 100 MB. */
export const MAX_HEADER_BYTES = 100_000_000;

const METADATA_KEY = "__metadata__";
const ENTRY_KEYS = new Set(["dtype", "shape", "data_offsets"]);

type TypedArrayCtor = { new (buffer: ArrayBuffer, byteOffset: number, length: number): TensorData; readonly name: string };

const DTYPE_ARRAY: Record<Dtype, TypedArrayCtor> = {
  BOOL: Uint8Array,
  U8: Uint8Array,
  I8: Int8Array,
  F8_E5M2: Uint8Array,
  F8_E4M3: Uint8Array,
  I16: Int16Array,
  U16: Uint16Array,
  F16: Uint16Array,
  BF16: Uint16Array,
  I32: Int32Array,
  U32: Uint32Array,
  F32: Float32Array,
  F64: Float64Array,
  I64: BigInt64Array,
  U64: BigUint64Array,
};

/** Error for a malformed or inconsistent safetensors file or tensor map; names the file and tensor. */
export class SafetensorsError extends Error {
  constructor(
    readonly source: string,
    readonly tensor: string | undefined,
    problem: string,
  ) {
    super(`${source}: ${tensor === undefined ? "" : `tensor ${JSON.stringify(tensor)}: `}${problem}`);
    this.name = "SafetensorsError";
  }
}

/** True if `s` names a dtype of the format. */
export function isDtype(s: unknown): s is Dtype {
  return typeof s === "string" && Object.prototype.hasOwnProperty.call(DTYPE_SIZE, s);
}

/** Number of elements of a shape (1 for a scalar), or throws if it is not a list of non-negative safe integers. */
export function shapeSize(shape: readonly number[], what = "shape"): number {
  let n = 1;
  for (const d of shape) {
    if (!Number.isSafeInteger(d) || d < 0) throw new Error(`${what} ${JSON.stringify(shape)} has a dimension that is not a non-negative integer`);
    n *= d;
    if (!Number.isSafeInteger(n)) throw new Error(`${what} ${JSON.stringify(shape)} has too many elements`);
  }
  return n;
}

function assertLittleEndianHost(): void {
  // Typed arrays use host byte order and the format is little-endian; every supported Node platform is LE.
  if (os.endianness() !== "LE") throw new Error("safetensors I/O needs a little-endian host");
}

/**
 * Serialises tensors to the format as a list of byte chunks (header first, then tensor data views, not
 * copies). Tensors are laid out by element size, largest first, then by name (as the reference writer does,
 * so every tensor is naturally aligned for zero-copy readers); the header is space-padded to a multiple of 8.
 */
export function encodeSafetensors(
  tensors: ReadonlyMap<string, SafetensorsTensor>,
  metadata: Readonly<Record<string, string>> = {},
  source = "<safetensors writer>",
): Uint8Array[] {
  assertLittleEndianHost();
  const names = [...tensors.keys()];
  for (const name of names) {
    const t = tensors.get(name) as SafetensorsTensor;
    if (name === METADATA_KEY) throw new SafetensorsError(source, name, `the name ${METADATA_KEY} is reserved`);
    if (!isDtype(t.dtype)) throw new SafetensorsError(source, name, `unknown dtype ${JSON.stringify(t.dtype)}`);
    const ctor = DTYPE_ARRAY[t.dtype];
    if (!(t.data instanceof ctor)) {
      throw new SafetensorsError(source, name, `dtype ${t.dtype} needs a ${ctor.name}, got ${t.data?.constructor?.name ?? typeof t.data}`);
    }
    let n: number;
    try {
      n = shapeSize(t.shape);
    } catch (e) {
      throw new SafetensorsError(source, name, (e as Error).message);
    }
    if (n !== t.data.length) throw new SafetensorsError(source, name, `shape ${JSON.stringify(t.shape)} has ${n} elements but data has ${t.data.length}`);
  }
  for (const [k, v] of Object.entries(metadata)) {
    if (typeof v !== "string") throw new SafetensorsError(source, undefined, `${METADATA_KEY} value for ${JSON.stringify(k)} is not a string`);
  }
  names.sort((a, b) => {
    const sa = DTYPE_SIZE[(tensors.get(a) as SafetensorsTensor).dtype];
    const sb = DTYPE_SIZE[(tensors.get(b) as SafetensorsTensor).dtype];
    return sb - sa || (a < b ? -1 : a > b ? 1 : 0);
  });

  // Build the JSON by hand: a JS object would reorder integer-like keys such as "0".
  const parts: string[] = [];
  const metaEntries = Object.entries(metadata);
  if (metaEntries.length > 0) {
    parts.push(`${JSON.stringify(METADATA_KEY)}:{${metaEntries.map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v)}`).join(",")}}`);
  }
  const chunks: Uint8Array[] = [];
  let offset = 0;
  for (const name of names) {
    const t = tensors.get(name) as SafetensorsTensor;
    const bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    parts.push(`${JSON.stringify(name)}:{"dtype":"${t.dtype}","shape":[${t.shape.join(",")}],"data_offsets":[${offset},${offset + bytes.byteLength}]}`);
    offset += bytes.byteLength;
    if (bytes.byteLength > 0) chunks.push(bytes);
  }
  const json = Buffer.from(`{${parts.join(",")}}`, "utf8");
  const padded = Math.ceil(json.byteLength / 8) * 8;
  const head = Buffer.alloc(8 + padded, 0x20);
  head.writeBigUInt64LE(BigInt(padded), 0);
  json.copy(head, 8);
  return [head, ...chunks];
}

/**
 * Parses and validates the header of a safetensors file held in `bytes` (`source` names it in errors).
 * Checks: header length within the file and under `maxHeaderBytes`; UTF-8 JSON object without duplicate keys;
 * every entry has exactly dtype/shape/data_offsets, a known dtype, a non-negative integer shape, integer offsets
 * inside the data region whose span equals elements x dtype size; entries tile the data region with no
 * overlap and no gap; metadata values are strings.
 */
export function parseSafetensorsHeader(
  bytes: Uint8Array,
  source: string,
  opts: { maxHeaderBytes?: number } = {},
): SafetensorsHeader {
  const fail: (problem: string, tensor?: string) => never = (problem, tensor) => {
    throw new SafetensorsError(source, tensor, problem);
  };
  const maxHeader = opts.maxHeaderBytes ?? MAX_HEADER_BYTES;
  if (bytes.byteLength < 8) fail(`file is ${bytes.byteLength} bytes, too short for the 8-byte header length`);
  const n64 = new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true);
  if (n64 > BigInt(maxHeader)) fail(`header length ${n64} exceeds the limit of ${maxHeader} bytes`);
  const n = Number(n64);
  if (n > bytes.byteLength - 8) fail(`header length ${n} exceeds the ${bytes.byteLength - 8} bytes after the length field (file truncated or corrupt)`);
  const dataStart = 8 + n;
  const dataLength = bytes.byteLength - dataStart;

  let text = "";
  try {
    text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(bytes.subarray(8, dataStart));
  } catch {
    fail("header is not valid UTF-8");
  }
  if (!text.startsWith("{")) fail("header does not start with '{' (not a JSON object)");
  let root: JsonValue = null;
  try {
    root = parseStrictJson(text, 8);
  } catch (e) {
    if (e instanceof JsonSyntaxError) fail(`header is not valid JSON: ${e.message}`);
    throw e;
  }
  if (!isJsonObject(root)) return fail("header is not a JSON object");

  const metadata = metadataOf(root, fail);
  const layouts: TensorLayout[] = [];
  for (const [name, entry] of root) {
    if (name === METADATA_KEY) continue;
    if (!isJsonObject(entry)) return fail("entry is not an object", name);
    for (const k of entry.keys()) if (!ENTRY_KEYS.has(k)) fail(`unexpected field ${JSON.stringify(k)}`, name);
    const dtype = entry.get("dtype");
    if (dtype === undefined) fail("missing field dtype", name);
    if (!isDtype(dtype)) return fail(`unknown dtype ${JSON.stringify(dtype)}`, name);
    const shape = entry.get("shape");
    if (!Array.isArray(shape)) return fail("field shape is missing or not an array", name);
    if (!shape.every((d): d is number => typeof d === "number" && Number.isSafeInteger(d) && d >= 0)) {
      return fail(`shape ${JSON.stringify(shape)} must be a list of non-negative integers`, name);
    }
    // Cap at Infinity once beyond the data region so crafted shapes cannot overflow; a zero dim still gives 0.
    let numel = shape.includes(0) ? 0 : 1;
    for (const d of shape) numel = numel * d > dataLength ? Infinity : numel * d;
    const offs = entry.get("data_offsets");
    if (!Array.isArray(offs) || offs.length !== 2) return fail("field data_offsets is missing or not a [begin, end] pair", name);
    const [begin, end] = offs;
    if (typeof begin !== "number" || typeof end !== "number" || !Number.isSafeInteger(begin) || !Number.isSafeInteger(end) || begin < 0 || end < 0) {
      return fail(`data_offsets ${JSON.stringify(offs)} must be non-negative integers`, name);
    }
    if (begin > end) fail(`data_offsets [${begin}, ${end}] has begin after end`, name);
    if (end > dataLength) fail(`data_offsets [${begin}, ${end}] run past the end of the ${dataLength}-byte data region (file truncated or corrupt)`, name);
    if (numel === Infinity) fail(`shape ${JSON.stringify(shape)} has more elements than the ${dataLength}-byte data region can hold`, name);
    const expected = numel * DTYPE_SIZE[dtype];
    if (end - begin !== expected) {
      fail(`data_offsets [${begin}, ${end}] span ${end - begin} bytes but shape ${JSON.stringify(shape)} of ${dtype} needs ${expected}`, name);
    }
    layouts.push({ name, dtype, shape, begin, end });
  }

  // The spec requires the tensors to tile the data region: no overlaps, no holes, nothing left over.
  layouts.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let cursor = 0;
  let prev: string | undefined;
  for (const t of layouts) {
    if (t.begin < cursor) fail(`data_offsets [${t.begin}, ${t.end}] overlap tensor ${JSON.stringify(prev)} ending at ${cursor}`, t.name);
    if (t.begin > cursor) fail(`gap of ${t.begin - cursor} uncovered bytes before data_offsets [${t.begin}, ${t.end}]`, t.name);
    cursor = t.end;
    if (t.end > t.begin) prev = t.name;
  }
  if (cursor !== dataLength) fail(`data region has ${dataLength - cursor} trailing bytes not covered by any tensor`);
  return { headerLength: n, dataStart, tensors: layouts, metadata };
}

/** The header's __metadata__ (empty when absent), checked to map strings to strings. */
function metadataOf(root: Map<string, JsonValue>, fail: (problem: string) => never): Record<string, string> {
  const entry = root.get(METADATA_KEY);
  if (entry === undefined) return {};
  if (!isJsonObject(entry)) fail(`${METADATA_KEY} is not an object`);
  const m = entry as Map<string, JsonValue>;
  for (const [k, v] of m) if (typeof v !== "string") fail(`${METADATA_KEY} value for ${JSON.stringify(k)} is not a string`);
  return Object.fromEntries(m) as Record<string, string>;
}

/**
 * Reads only the header of a safetensors file on disk and returns its __metadata__: for metadata beside large
 * tensors (a training state's moments) that need not be read. The tensor entries are not validated here.
 */
export async function readSafetensorsMetadata(file: string): Promise<Record<string, string>> {
  const fail = (problem: string): never => {
    throw new SafetensorsError(file, undefined, problem);
  };
  const fh = await fs.open(file, "r");
  try {
    const { size } = await fh.stat();
    const lengthField = Buffer.alloc(8);
    if (size < 8 || (await fh.read(lengthField, 0, 8, 0)).bytesRead !== 8) fail(`file is ${size} bytes, too short for the 8-byte header length`);
    const n64 = lengthField.readBigUInt64LE(0);
    if (n64 > BigInt(MAX_HEADER_BYTES)) fail(`header length ${n64} exceeds the limit of ${MAX_HEADER_BYTES} bytes`);
    const n = Number(n64);
    if (n > size - 8) fail(`header length ${n} exceeds the ${size - 8} bytes after the length field (file truncated or corrupt)`);
    const bytes = Buffer.alloc(n);
    await fh.read(bytes, 0, n, 8);
    let root: JsonValue = null;
    try {
      root = parseStrictJson(new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(bytes), 8);
    } catch (e) {
      fail(`header is not valid JSON: ${(e as Error).message}`);
    }
    if (!isJsonObject(root)) return fail("header is not a JSON object");
    return metadataOf(root, fail);
  } finally {
    await fh.close();
  }
}

/** Parses a whole safetensors file from memory, copying each tensor into its own aligned typed array. */
export function decodeSafetensors(bytes: Uint8Array, source: string, opts: { maxHeaderBytes?: number } = {}): SafetensorsFile {
  assertLittleEndianHost();
  const header = parseSafetensorsHeader(bytes, source, opts);
  const tensors = new Map<string, SafetensorsTensor>();
  for (const t of header.tensors) {
    // Copy: the source may be unaligned for the element type (e.g. after an odd-length U8 tensor, or a pooled Buffer).
    const copy = new Uint8Array(t.end - t.begin);
    copy.set(bytes.subarray(header.dataStart + t.begin, header.dataStart + t.end));
    const ctor = DTYPE_ARRAY[t.dtype];
    tensors.set(t.name, { dtype: t.dtype, shape: t.shape, data: new ctor(copy.buffer, 0, copy.byteLength / DTYPE_SIZE[t.dtype]) });
  }
  return { tensors, metadata: header.metadata };
}

/** Reads and validates a safetensors file from disk. */
export async function readSafetensors(file: string, opts: { maxHeaderBytes?: number } = {}): Promise<SafetensorsFile> {
  return decodeSafetensors(await fs.readFile(file), file, opts);
}

/** Writes tensors and metadata to `file` atomically; returns the size and SHA-256 of what was written. */
export async function writeSafetensors(
  file: string,
  tensors: ReadonlyMap<string, SafetensorsTensor>,
  metadata: Readonly<Record<string, string>> = {},
): Promise<WrittenFile> {
  const chunks = encodeSafetensors(tensors, metadata, file);
  return atomicWriteFile(file, async (sink) => {
    for (const c of chunks) await sink.write(c);
  });
}

/** A tensor's elements as float32: F32 as is, F16 / BF16 converted; other dtypes are refused naming `what`. */
export function tensorToFloat32(t: SafetensorsTensor, what: string): Float32Array {
  if (t.dtype === "F32") return t.data as Float32Array;
  if (t.dtype === "F16") return f16ToFloat32(t.data as Uint16Array);
  if (t.dtype === "BF16") return bf16ToFloat32(t.data as Uint16Array);
  throw new Error(`${what}: dtype ${t.dtype} cannot be read as float32 (expected F32, F16 or BF16)`);
}
