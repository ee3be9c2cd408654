/**
 * Checking that a span of text is one JSON value, without building it: for request and response
 * bodies that no sink keeps, which the receiver must still refuse when malformed.
 *
 * Never looser than `JSON.parse`: a value it accepts, `JSON.parse` accepts too (property-tested
 * against it). It may be stricter, where that costs nothing on what the apiserver sends: a caller
 * that gets -1 parses the text as usual and lets `JSON.parse` decide.
 *
 * Pure: no I/O, no clock, no logger.
 */

// A JSON number as RFC 8259 spells it, read from where the value begins.
const NUMBER = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;
// The four hexadecimal digits of a `\u` escape.
const HEX4 = /[0-9a-fA-F]{4}/y;
// Characters a JSON string may not hold unescaped: finding them is the point.
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f]/g;

/**
 * Reads values out of one text. It keeps the next backslash and control character at or after
 * where it last looked, found by native searches and reused by every string until the reading
 * passes them (one reader per text, so that these searches cover it once): most strings hold
 * neither, and are then checked by their closing quote alone.
 */
export class JsonReader {
  readonly #text: string;
  readonly #maxDepth: number;
  #backslash = -1;
  #control = -1;

  constructor(text: string, maxDepth: number) {
    this.#text = text;
    this.#maxDepth = maxDepth;
  }

  /**
   * Where the JSON value that begins at `from` ends (the offset after its last character), or -1
   * when no valid value begins there, or when it nests deeper than `maxDepth` counting `depth`
   * levels around it. Whitespace before the value is not skipped; a number is read as far as it
   * goes, so the character after it decides, as for `JSON.parse`, whether the text is valid.
   */
  valueEnd(from: number, depth: number): number {
    return this.#value(from, depth);
  }

  // The end (after the closing quote) of the string whose opening quote is just before `from`.
  #string(from: number): number {
    const text = this.#text;
    let at = from;
    for (;;) {
      const quote = text.indexOf('"', at);
      if (quote === -1) return -1;
      if (this.#control < at) this.#control = nextControl(text, at);
      if (this.#control < quote) return -1;
      if (this.#backslash < at) this.#backslash = nextOf(text, '\\', at);
      const escape = this.#backslash;
      if (escape > quote) return quote + 1;
      // An escape before the quote: it must be one of JSON's, and the quote may be what it escapes.
      const c = text.charCodeAt(escape + 1);
      if (c === 0x75 /* u */) {
        HEX4.lastIndex = escape + 2;
        if (!HEX4.test(text)) return -1;
        at = escape + 6;
      } else if (isSimpleEscape(c)) {
        at = escape + 2;
      } else {
        return -1;
      }
    }
  }

  #value(from: number, depth: number): number {
    const text = this.#text;
    const c = text.charCodeAt(from);
    switch (c) {
      case 0x22 /* " */:
        return this.#string(from + 1);
      case 0x7b /* { */: {
        if (depth + 1 > this.#maxDepth) return -1;
        let at = skipSpace(text, from + 1);
        if (text.charCodeAt(at) === 0x7d /* } */) return at + 1;
        for (;;) {
          if (text.charCodeAt(at) !== 0x22) return -1;
          at = this.#string(at + 1);
          if (at === -1) return -1;
          at = skipSpace(text, at);
          if (text.charCodeAt(at) !== 0x3a /* : */) return -1;
          at = this.#value(skipSpace(text, at + 1), depth + 1);
          if (at === -1) return -1;
          at = skipSpace(text, at);
          const next = text.charCodeAt(at);
          if (next === 0x7d) return at + 1;
          if (next !== 0x2c /* , */) return -1;
          at = skipSpace(text, at + 1);
        }
      }
      case 0x5b /* [ */: {
        if (depth + 1 > this.#maxDepth) return -1;
        let at = skipSpace(text, from + 1);
        if (text.charCodeAt(at) === 0x5d /* ] */) return at + 1;
        for (;;) {
          at = this.#value(at, depth + 1);
          if (at === -1) return -1;
          at = skipSpace(text, at);
          const next = text.charCodeAt(at);
          if (next === 0x5d) return at + 1;
          if (next !== 0x2c) return -1;
          at = skipSpace(text, at + 1);
        }
      }
      case 0x74 /* t */:
        return text.startsWith('true', from) ? from + 4 : -1;
      case 0x66 /* f */:
        return text.startsWith('false', from) ? from + 5 : -1;
      case 0x6e /* n */:
        return text.startsWith('null', from) ? from + 4 : -1;
      default:
        NUMBER.lastIndex = from;
        return NUMBER.test(text) ? NUMBER.lastIndex : -1;
    }
  }
}

/** The offset of the first character after JSON whitespace at or after `from`. */
export function skipSpace(text: string, from: number): number {
  let at = from;
  for (;;) {
    const c = text.charCodeAt(at);
    if (c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) return at;
    at++;
  }
}

/** The offset of the last character before `before` that is not JSON whitespace; -1 when none. */
export function lastNonSpace(text: string, before: number): number {
  let at = before - 1;
  for (;;) {
    const c = text.charCodeAt(at);
    if (c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) return at;
    at--;
  }
}

// `\"`, `\\`, `\/`, `\b`, `\f`, `\n`, `\r`, `\t`.
function isSimpleEscape(c: number): boolean {
  return (
    c === 0x22 ||
    c === 0x5c ||
    c === 0x2f ||
    c === 0x62 ||
    c === 0x66 ||
    c === 0x6e ||
    c === 0x72 ||
    c === 0x74
  );
}

// Past the end of the text when there is none: every later position then compares as before it.
function nextOf(text: string, char: string, from: number): number {
  const at = text.indexOf(char, from);
  return at === -1 ? text.length : at;
}

function nextControl(text: string, from: number): number {
  CONTROL.lastIndex = from;
  return CONTROL.test(text) ? CONTROL.lastIndex - 1 : text.length;
}
