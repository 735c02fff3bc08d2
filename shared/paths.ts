import * as path from "node:path";
import * as fs from "node:fs";

/** The repository (package) root, found by walking up from this file to package.json; works from src and dist. */
export function repoRoot(): string {
  let dir = __dirname;
  for (;;) {
    if (fs.existsSync(path.join(dir, "package.json")) && fs.existsSync(path.join(dir, "proto"))) return dir;
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error(`cannot find the ringtrain package root above ${__dirname}`);
    dir = parent;
  }
}

/** Absolute path of a file under proto/. */
export function protoPath(file: string): string {
  return path.join(repoRoot(), "proto", file);
}
