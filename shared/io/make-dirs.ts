/** `mkdir -p` that cannot spin: see makeDirs. */
import * as fs from "node:fs";
import * as path from "node:path";

/**
 * Creates `dir` and its missing parents (`mkdir -p`), one level at a time. Node's own `fs.mkdirSync(dir,
 * { recursive: true })` spins forever, at 100% CPU, on a path whose parent exists but cannot hold it (anything
 * under /proc, a dangling symbolic link: mkdir reports ENOENT although the parent is there, and Node retries the
 * parent); this throws that ENOENT instead, and ENOTDIR when a component is a file.
 */
export function makeDirs(dir: string): void {
  const missing: string[] = [];
  for (let cur = path.resolve(dir); ; cur = path.dirname(cur)) {
    let st: fs.Stats | undefined;
    try {
      st = fs.statSync(cur);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
    }
    if (st !== undefined) {
      if (!st.isDirectory()) throw fsError("ENOTDIR", `not a directory, '${cur}'`);
      break;
    }
    missing.push(cur);
    if (path.dirname(cur) === cur) break;
  }
  for (const d of missing.reverse()) {
    try {
      fs.mkdirSync(d);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    }
  }
}

/** An fs-style error (`code` set), as fs itself would throw it. */
function fsError(code: string, message: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`${code}: ${message}`), { code });
}

/** makeDirs for a configured folder: a failure names the config field and the folder (e.g. "data.cache_dir"). */
export function makeConfiguredDirs(field: string, dir: string): void {
  try {
    makeDirs(dir);
  } catch (err) {
    throw new Error(`${field} ${dir} cannot be created: ${(err as Error).message}`);
  }
}
