import { ConfigError } from "../shared/config/load";

/**
 * Errors about the user's input (a data file, a model directory, a value out of range) are thrown as plain `Error`s
 * by the shared code; at the CLI they are bad input: a ConfigError (exit 2, one line, no stack trace), with `prefix`
 * naming where the input came from. Subclasses (TypeError, RangeError, …) are bugs and stay as they are.
 */
export function asInputError(e: unknown, prefix = ""): unknown {
  if (e instanceof ConfigError || !(e instanceof Error) || e.constructor !== Error) return e;
  return new ConfigError(`${prefix}${e.message}`);
}

/**
 * A command-line value that must be one whole number >= min; yargs turns a flag given twice into an array, which is
 * refused like any other bad value. Returns the number.
 */
export function wholeFlag(flag: string, v: unknown, min: number): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < min) {
    const got = Array.isArray(v) ? `${flag} given ${v.length} times` : typeof v === "number" && Number.isNaN(v) ? typedValue(flag) : String(v);
    throw new ConfigError(`${flag} must be an integer >= ${min} (got ${got})`);
  }
  return v;
}

/** Refuses a single-valued flag given more than once (yargs collects the values into an array). */
export function onceFlag(flag: string, v: unknown): void {
  if (Array.isArray(v)) throw new ConfigError(`--${flag} given ${v.length} times (${v.join(", ")}); give it once`);
}

/**
 * What the user typed for `flag` ("--steps x" or "--steps=x") as a quoted string, for messages about values yargs
 * could not read as numbers (it hands over NaN); "not a number" when it cannot be found.
 */
export function typedValue(flag: string, argv: readonly string[] = process.argv): string {
  const name = flag.startsWith("--") ? flag : `--${flag}`;
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === name && i + 1 < argv.length) return `'${argv[i + 1]}'`;
    if (argv[i].startsWith(`${name}=`)) return `'${argv[i].slice(name.length + 1)}'`;
  }
  return "not a number";
}
