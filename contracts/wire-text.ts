/**
 * The one text rule for every string on the wire (issue #22), and the one way both CLIs print text that
 * came from outside.
 *
 * A wire string must not contain:
 * - C0 controls U+0000-U+001F (NUL, CR, LF, TAB, ESC, ...) and DEL U+007F: PostgreSQL refuses NUL in text
 *   and JSON (one such item made the whole batch a retriable 500), CR/LF inject lines into ERP requests and
 *   logs, ESC drives the operator's terminal;
 * - C1 controls U+0080-U+009F (U+009B is a one-byte CSI on some terminals);
 * - bidirectional controls U+061C, U+200E, U+200F, U+202A-U+202E, U+2066-U+2069 (text that reads
 *   differently from what it is, "Trojan Source");
 * - lone surrogates (U+D800-U+DFFF not in a pair): not Unicode text; PostgreSQL would store U+FFFD in their
 *   place, SQLite the raw units, so the two stores would disagree.
 *
 * The hub refuses such a string per item with SCHEMA_INVALID naming the field and the code point; nothing is
 * normalised silently (a changed order number posted to the ERP is worse than a visible dead letter). The
 * agent's drivers remove what means nothing at the PLC (trailing NUL padding, agent/drivers/plc-text.ts)
 * before anything is derived from it.
 */

/** one forbidden code point; with the u flag a surrogate pair is one code point, so only lone ones match */
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const FORBIDDEN = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]/u;
// eslint-disable-next-line no-control-regex -- as above
const FORBIDDEN_ALL = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]/gu;

/** true when `s` follows the wire text rule */
export function isWireText(s: string): boolean {
  return !FORBIDDEN.test(s);
}

/** The first forbidden code point of `s` and its index (UTF-16 units), or undefined when `s` is wire text. */
export function forbiddenIn(s: string): { codePoint: number; index: number } | undefined {
  const m = FORBIDDEN.exec(s);
  return m ? { codePoint: m[0].codePointAt(0)!, index: m.index } : undefined;
}

const hex = (cp: number) => cp.toString(16).toUpperCase().padStart(4, '0');

/** The message of a refused string: which code point, where. */
export function wireTextMessage(s: unknown): string {
  const f = typeof s === 'string' ? forbiddenIn(s) : undefined;
  const what = f ? `U+${hex(f.codePoint)} at position ${f.index}` : 'a forbidden character';
  return `contains ${what}: control characters, bidirectional controls and lone surrogates are not allowed in wire text`;
}

/**
 * Text for a terminal: every forbidden code point (and the backslash, so the escape is unambiguous) as a
 * visible escape, `\x1b`, `\u202e`, `\ud800`. Wire text passes unchanged except for backslashes, which
 * double. Every value a CLI prints that came from an agent, the ERP or a database goes through this.
 */
export function printable(s: string): string {
  if (!FORBIDDEN.test(s) && !s.includes('\\')) return s;
  return s.replace(/\\/g, '\\\\').replace(FORBIDDEN_ALL, (c) => {
    const cp = c.codePointAt(0)!;
    return cp <= 0xff ? `\\x${cp.toString(16).padStart(2, '0')}` : `\\u${cp.toString(16).padStart(4, '0')}`;
  });
}

/**
 * For the agent's own free text (a driver's error message, an alarm text) before it goes on the wire: each
 * forbidden code point becomes a space. Only for text the agent writes about itself, never for data that is
 * posted (that is refused, see above).
 */
export function toWireText(s: string): string {
  return FORBIDDEN.test(s) ? s.replace(FORBIDDEN_ALL, ' ') : s;
}

/**
 * JSON for a terminal (`--json`, `show`): still valid JSON, with the forbidden code points JSON.stringify
 * leaves as they are (C1 and bidirectional controls) written as \u escapes too.
 */
export function printableJson(value: unknown, indent = 2): string {
  const text = JSON.stringify(value, null, indent) ?? 'null';
  // C0 inside strings is escaped by JSON.stringify already (the newlines left are the indentation's)
  return NOT_ESCAPED_BY_JSON.test(text) ? text.replace(NOT_ESCAPED_BY_JSON_ALL, (c) => `\\u${c.codePointAt(0)!.toString(16).padStart(4, '0')}`) : text;
}
const NOT_ESCAPED_BY_JSON = /[\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/;
const NOT_ESCAPED_BY_JSON_ALL = /[\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;
