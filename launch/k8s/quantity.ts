import { ConfigError } from "../../shared/config/load";

/** What a quantity measures: bytes (memory, /dev/shm size) or CPU cores. */
export type QuantityKind = "memory" | "cpu";

/**
 * Kubernetes quantities as `launch k8s` accepts them (a subset of resource.Quantity, so the API server never
 * rejects one): memory as a positive decimal with an optional binary (Ki..Ei) or decimal (k..E) suffix, e.g. 16Gi;
 * CPU as cores (4, 0.5, at most millicore precision) or millicores (500m).
 */
const FORMS: Record<QuantityKind, { re: RegExp; example: string }> = {
  memory: { re: /^\d+(\.\d+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$/, example: "16Gi" },
  cpu: { re: /^(\d+(\.\d{1,3})?|\d+m)$/, example: "4 or 500m" },
};

/**
 * Throws ConfigError naming `flag` unless `value` is a positive Kubernetes quantity of the given kind; returns it
 * unchanged (it goes into the manifest as written).
 */
export function checkQuantity(flag: string, value: string, kind: QuantityKind): string {
  const form = FORMS[kind];
  if (!form.re.test(value)) throw new ConfigError(`${flag} '${value}' is not a Kubernetes ${kind} quantity (e.g. ${form.example})`);
  if (!/[1-9]/.test(value)) throw new ConfigError(`${flag} '${value}' must be more than zero`);
  return value;
}
