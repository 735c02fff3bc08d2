/** Finding a python3 that imports torch, for the tests that check ringtrain against an independent torch reference. */
import { spawnSync } from "node:child_process";

/** A python3 that imports torch ($PYTHON, then Debian's python3-torch under /usr/bin/python3, then PATH), or undefined. */
export function pythonWithTorch(): string | undefined {
  for (const py of [process.env.PYTHON, "/usr/bin/python3", "python3"]) {
    if (py === undefined || py === "") continue;
    const r = spawnSync(py, ["-c", "import torch"], { encoding: "utf8", timeout: 60_000 });
    if (r.status === 0) return py;
  }
  return undefined;
}

/** pythonWithTorch(), or undefined after marking the test skipped (the torch check then did not run, and says so). */
export function pythonWithTorchOrSkip(t: { skip(message: string): void }): string | undefined {
  const py = pythonWithTorch();
  if (py === undefined) t.skip("no python3 with torch importable (set PYTHON=...): the torch reference check did not run");
  return py;
}
