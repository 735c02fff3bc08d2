/** One training document: a text with an id, and optional genre, class label and second text (pairs). */
export interface Document {
  id: string;
  text: string;
  genre?: string;
  label?: string;
  textPair?: string;
  /** Where the record was read ("<file>:<line>") when its own `id` replaced that as the id; errors name it. */
  source?: string;
}
