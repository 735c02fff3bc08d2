/** The readable part of an e-mail message. */
export interface MailText {
  subject: string;
  body: string;
}

type Headers = Map<string, string>;

/**
 * Reduces a raw RFC 822 message (given as a binary "latin1" string, one char per byte) to its Subject and
 * readable body: headers dropped, MIME multiparts walked for text parts (text/plain preferred inside
 * multipart/alternative), quoted-printable and base64 decoded, the part's charset applied (UTF-8 or
 * else treated as Latin-1), HTML reduced to its text.
 */
export function parseMail(raw: string): MailText {
  const { headers, body } = splitHeaders(raw.replace(/\r\n?/g, "\n"));
  const subject = decodeEncodedWords(headers.get("subject") ?? "").replace(/\s+/g, " ").trim();
  return { subject, body: tidy(stripEmbeddedHeaders(extractText(headers, body, 0))) };
}

// Transport and MIME headers that carry no prose; From/To/Date/Subject of quoted mails are kept.
const TRANSPORT_HEADER =
  /^[ \t]*(received|return-path|delivered-to|envelope-to|message-id|mime-version|content-[\w-]+|x-[\w-]+|list-[\w-]+|precedence|errors-to|sender|in-reply-to|references|dkim-signature|authentication-results|thread-[\w-]+|importance):/i;

/** Drops header lines (with their folded continuation lines) of mails quoted or forwarded inside a body. */
function stripEmbeddedHeaders(text: string): string {
  const out: string[] = [];
  let dropping = false;
  for (const line of text.split("\n")) {
    if (TRANSPORT_HEADER.test(line)) {
      dropping = true;
      continue;
    }
    if (dropping && /^[ \t]+\S/.test(line)) continue;
    dropping = false;
    out.push(line);
  }
  return out.join("\n");
}

function splitHeaders(msg: string): { headers: Headers; body: string } {
  const end = msg.indexOf("\n\n");
  const head = end < 0 ? msg : msg.slice(0, end);
  const body = end < 0 ? "" : msg.slice(end + 2);
  const headers: Headers = new Map();
  let name: string | undefined;
  for (const line of head.split("\n")) {
    if (/^[ \t]/.test(line) && name !== undefined) {
      headers.set(name, (headers.get(name) as string) + " " + line.trim());
      continue;
    }
    const m = /^([!-9;-~]+):[ \t]*(.*)$/.exec(line);
    if (m === null) {
      name = undefined; // the mbox "From " separator or a malformed line
      continue;
    }
    name = m[1].toLowerCase();
    // Keep the first occurrence: a header repeated later belongs to relays, not the author.
    if (headers.has(name)) name = undefined;
    else headers.set(name, m[2]);
  }
  return { headers, body };
}

function param(value: string, key: string): string | undefined {
  const m = new RegExp(`;\\s*${key}\\s*=\\s*(?:"([^"]*)"|([^;\\s]+))`, "i").exec(value);
  return m === null ? undefined : (m[1] ?? m[2]);
}

function extractText(headers: Headers, body: string, depth: number): string {
  const ctype = headers.get("content-type") ?? "text/plain";
  const type = ctype.split(";")[0].trim().toLowerCase();
  if (type.startsWith("multipart/") && depth < 8) {
    const boundary = param(ctype, "boundary");
    if (boundary !== undefined) {
      const parts = splitMultipart(body, boundary).map((p) => splitHeaders(p.startsWith("\n") ? "\n" + p : p));
      if (type === "multipart/alternative") {
        const isType = (p: { headers: Headers }, t: string): boolean =>
          (p.headers.get("content-type") ?? "text/plain").toLowerCase().startsWith(t);
        const best = parts.find((p) => isType(p, "text/plain")) ?? parts.find((p) => isType(p, "text/html")) ?? parts[0];
        return best === undefined ? "" : extractText(best.headers, best.body, depth + 1);
      }
      return parts.map((p) => extractText(p.headers, p.body, depth + 1)).filter((t) => t.trim() !== "").join("\n\n");
    }
  }
  if (type === "message/rfc822" && depth < 8) {
    const inner = splitHeaders(body);
    const subject = decodeEncodedWords(inner.headers.get("subject") ?? "");
    return `${subject}\n\n${extractText(inner.headers, inner.body, depth + 1)}`;
  }
  // Attachments (images, archives, programs) and header dumps (text/rfc822-headers) carry no prose.
  if (!type.startsWith("text/") || type === "text/rfc822-headers") return "";
  const encoding = (headers.get("content-transfer-encoding") ?? "").trim().toLowerCase();
  let bytes = body;
  if (encoding === "quoted-printable") bytes = decodeQuotedPrintable(body);
  else if (encoding === "base64") bytes = Buffer.from(body.replace(/[^A-Za-z0-9+/=]/g, ""), "base64").toString("latin1");
  const charset = (param(ctype, "charset") ?? "").toLowerCase();
  const text = charset === "utf-8" || charset === "utf8" ? Buffer.from(bytes, "latin1").toString("utf8") : bytes;
  return type === "text/html" || /^\s*<(!doctype|html|head|body)/i.test(text) ? htmlToText(text) : text;
}

function splitMultipart(body: string, boundary: string): string[] {
  const parts: string[] = [];
  let current: string[] | undefined;
  for (const line of body.split("\n")) {
    const t = line.trimEnd();
    if (t === `--${boundary}--`) break;
    if (t === `--${boundary}`) {
      if (current !== undefined) parts.push(current.join("\n"));
      current = [];
    } else if (current !== undefined) {
      current.push(line);
    }
  }
  if (current !== undefined) parts.push(current.join("\n"));
  return parts;
}

function decodeQuotedPrintable(s: string): string {
  return s.replace(/=\n/g, "").replace(/=([0-9A-Fa-f]{2})/g, (_, h: string) => String.fromCharCode(parseInt(h, 16)));
}

/** Decodes RFC 2047 "=?charset?Q|B?...?=" words in a header value. */
function decodeEncodedWords(value: string): string {
  return value.replace(/=\?([^?]+)\?([QqBb])\?([^?]*)\?=/g, (_, charset: string, enc: string, data: string) => {
    const bytes =
      enc.toUpperCase() === "B"
        ? Buffer.from(data, "base64").toString("latin1")
        : data.replace(/_/g, " ").replace(/=([0-9A-Fa-f]{2})/g, (__, h: string) => String.fromCharCode(parseInt(h, 16)));
    return /^utf-?8$/i.test(charset) ? Buffer.from(bytes, "latin1").toString("utf8") : bytes;
  });
}

const ENTITIES: Record<string, string> = { nbsp: " ", amp: "&", lt: "<", gt: ">", quot: '"', apos: "'", copy: "©", reg: "®" };

function htmlToText(html: string): string {
  return html
    .replace(/<!--[\s\S]*?-->/g, " ")
    .replace(/<(script|style)\b[\s\S]*?<\/\1\s*>/gi, " ")
    .replace(/<(br|p|div|tr|li|h[1-6])\b[^>]*>/gi, "\n")
    .replace(/<[^>]*>/g, " ")
    .replace(/&(#x[0-9a-f]+|#\d+|[a-z]+);/gi, (m, e: string) => {
      if (e[0] === "#") {
        const cp = e[1] === "x" || e[1] === "X" ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10);
        return cp > 0 && cp <= 0x10ffff ? String.fromCodePoint(cp) : " ";
      }
      return ENTITIES[e.toLowerCase()] ?? m;
    });
}

function tidy(text: string): string {
  return text
    .split("\n")
    .map((l) => l.replace(/[ \t\u00a0]+/g, " ").trim())
    .join("\n")
    .replace(/\n{3,}/g, "\n\n")
    .trim();
}
