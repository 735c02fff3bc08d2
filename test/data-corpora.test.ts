import { test } from "node:test";
import assert from "node:assert/strict";
import { detokenize, loadBrown } from "../shared/data/brown";
import { parseMail } from "../shared/data/mail";
import { loadSpamAssassin } from "../shared/data/spam-assassin";

test("Brown: 500 texts, 15 genres, POS tags gone, readable text", () => {
  const docs = loadBrown();
  assert.equal(docs.length, 500);
  const genres = new Set(docs.map((d) => d.genre));
  assert.equal(genres.size, 15);
  assert.ok(genres.has("news") && genres.has("science_fiction"));
  assert.equal(docs[0].id, "ca01");
  assert.equal(docs[0].genre, "news");
  assert.ok(
    docs[0].text.startsWith(
      'The Fulton County Grand Jury said Friday an investigation of Atlanta\'s recent primary election produced "no evidence" that any irregularities took place.\n',
    ),
    docs[0].text.slice(0, 200),
  );
  for (const d of docs) {
    // Tags look like /at /nn-tl /vbd /np$ /. ; none may survive (a fraction like 1/2 is not followed by a tag).
    // (Linguistic notation such as "/r/." in cj33 is text, hence the anchoring on whitespace.)
    assert.doesNotMatch(d.text, /\w\/(at|nn|nns|np|vbd|vb|in|jj|cc|cs|rb|pps|ppss)(-tl|-hl)?(\s|$)/, d.id);
    // Punctuation tags and quote tokens are gone (inch marks like 10'' inside a word are text, not tokens).
    assert.doesNotMatch(d.text, /\.\/\.|,\/,|(^|\s)(``|'')(\s|$)/, d.id);
  }
  const words = docs.reduce((n, d) => n + d.text.split(/\s+/).length, 0);
  assert.ok(words > 900_000 && words < 1_300_000, `about a million words, got ${words}`);
});

test("Brown detokenizer: punctuation and quotes attach to their words", () => {
  assert.equal(detokenize(["He", "said", "``", "no", "''", ",", "(", "twice", ")", "."]), 'He said "no", (twice).');
});

test("mail parser: headers stripped, subject kept, MIME text parts decoded", () => {
  const raw = [
    "From someone@example.com  Thu Aug 22 13:17:22 2002",
    "Received: from a.example.com",
    "\tby b.example.com with SMTP",
    "Subject: =?utf-8?Q?Caf=C3=A9_news?=",
    'Content-Type: multipart/alternative; boundary="XX"',
    "",
    "--XX",
    "Content-Type: text/plain; charset=utf-8",
    "Content-Transfer-Encoding: quoted-printable",
    "",
    "Prices dropped by 50=25 at the caf=C3=A9 to=",
    "day.",
    "--XX",
    "Content-Type: text/html",
    "",
    "<p>Prices dropped</p>",
    "--XX--",
  ].join("\n");
  assert.deepEqual(parseMail(raw), { subject: "Café news", body: "Prices dropped by 50% at the café today." });
  const html = parseMail("Subject: hi\nContent-Type: text/html\n\n<html><body><b>Buy</b> now &amp; save<br>today</body></html>");
  assert.equal(html.body, "Buy now & save\ntoday");
});

test("SpamAssassin: 6046 messages, both labels, no header lines left", () => {
  const docs = loadSpamAssassin();
  assert.equal(docs.length, 6046);
  const spam = docs.filter((d) => d.label === "spam").length;
  const ham = docs.filter((d) => d.label === "ham").length;
  assert.equal(spam + ham, docs.length);
  assert.equal(spam, 1896, "spam-1 (500) + spam-2 (1396)");
  assert.equal(ham, 4150, "easy-ham-1 (2500) + easy-ham-2 (1400) + hard-ham-1 (250)");
  assert.equal(docs[0].id, "easy-ham-1/00001.7c53336b37003a9286aba55d2945844c");
  assert.ok(docs[0].text.startsWith("Re: New Sequences Window\n\n"), docs[0].text.slice(0, 80));
  for (const d of docs) {
    assert.doesNotMatch(d.text, /^(Received|Return-Path|Delivered-To|X-Mailer|MIME-Version):/im, d.id);
  }
});
