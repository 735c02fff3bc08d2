import type { V1Container } from "@kubernetes/client-node";

/**
 * Kubernetes' `$(VAR)` expansion (k8s.io/kubernetes third_party/forked/golang/expansion): `$(NAME)` becomes the
 * value when NAME is defined and stays as written when not; `$$` is an escaped `$`. Used for env values (which
 * see the variables defined before them) and for command/args (which see them all).
 */
export function expandK8sVars(text: string, lookup: (name: string) => string | undefined): string {
  let out = "";
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c !== "$" || i + 1 >= text.length) {
      out += c;
      continue;
    }
    const next = text[i + 1];
    if (next === "$") {
      out += "$";
      i++;
    } else if (next === "(") {
      const close = text.indexOf(")", i + 2);
      if (close < 0) {
        out += text.slice(i);
        break;
      }
      const name = text.slice(i + 2, close);
      out += lookup(name) ?? `$(${name})`;
      i = close;
    } else {
      out += c;
    }
  }
  return out;
}

/** What the kubelet would supply for `valueFrom` sources of one pod. */
export interface PodValueSources {
  /** Downward API: `metadata.annotations['...']`, `status.podIP`, `metadata.name`, ... */
  fieldRef(fieldPath: string): string | undefined;
  secretKey(secretName: string, key: string): string | undefined;
}

/** The process a container would run: argv (command + args) and its environment, as the kubelet builds them. */
export interface ResolvedContainer {
  argv: string[];
  env: Record<string, string>;
}

/** Resolves a container's env (in order, with `$(VAR)` in values) and expands its command and args. */
export function resolveContainer(container: V1Container, sources: PodValueSources): ResolvedContainer {
  const env: Record<string, string> = {};
  for (const e of container.env ?? []) {
    let value: string | undefined;
    if (e.valueFrom?.fieldRef) value = sources.fieldRef(e.valueFrom.fieldRef.fieldPath);
    else if (e.valueFrom?.secretKeyRef) value = sources.secretKey(e.valueFrom.secretKeyRef.name ?? "", e.valueFrom.secretKeyRef.key);
    else if (e.valueFrom) throw new Error(`env ${e.name}: unsupported valueFrom ${Object.keys(e.valueFrom).join(",")}`);
    else value = expandK8sVars(e.value ?? "", (n) => env[n]);
    if (value === undefined) throw new Error(`env ${e.name}: its source is not available for this pod`);
    env[e.name] = value;
  }
  const lookup = (n: string): string | undefined => env[n];
  const argv = [...(container.command ?? []), ...(container.args ?? [])].map((a) => expandK8sVars(a, lookup));
  return { argv, env };
}
