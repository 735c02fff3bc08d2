/** Long documents cut into labelled passages (Brown genre classification). */
import type { Document } from "./document";

/**
 * Cuts each document into passages of about `words` whitespace-separated words (the last shorter piece is dropped
 * when under half that), each labelled with its document's genre. Ids are "<doc>#<k>". Split documents BEFORE
 * cutting so passages of one text never land on both sides of a split.
 */
export function genrePassages(docs: readonly Document[], words: number): Document[] {
  if (!Number.isInteger(words) || words < 1) throw new Error(`passage length must be a positive integer, got ${words}`);
  const out: Document[] = [];
  for (const d of docs) {
    if (d.genre === undefined) throw new Error(`document ${d.id} has no genre`);
    const all = d.text.split(/\s+/).filter((w) => w !== "");
    for (let k = 0, start = 0; start < all.length; k++, start += words) {
      const piece = all.slice(start, start + words);
      if (piece.length < words / 2 && k > 0) break;
      out.push({ id: `${d.id}#${k}`, text: piece.join(" "), label: d.genre, genre: d.genre });
    }
  }
  return out;
}
