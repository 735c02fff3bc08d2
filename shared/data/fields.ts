/**
 * Which JSONL keys / CSV header columns hold a record's text, second text and label (config data.text_field,
 * data.text_pair_field, data.label_field; HF run_glue's --text_column_name). `id` and `genre` keep their names.
 */
export interface RecordFields {
  text: string;
  textPair: string;
  label: string;
}

/** The default names, which HF datasets use too. */
export const DEFAULT_FIELDS: Readonly<RecordFields> = { text: "text", textPair: "text_pair", label: "label" };
