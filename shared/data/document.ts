/** One training document: a text with an id, and optional genre, class label and second text (pairs). */
export interface Document {
  id: string;
  text: string;
  genre?: string;
  label?: string;
  textPair?: string;
}
