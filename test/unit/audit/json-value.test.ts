// Checking JSON values without building them, against JSON.parse. Pure: starts no process.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { JsonReader, lastNonSpace, skipSpace } from '../../../src/audit/json-value.ts';

/** Where the value at the start of `text` ends, as a reader of `text` sees it. */
function end(text: string, maxDepth = 512): number {
  return new JsonReader(text, maxDepth).valueEnd(0, 0);
}

function parses(text: string): boolean {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}

describe('JsonReader.valueEnd', () => {
  it.each([
    ['{}', 2],
    ['[]', 2],
    ['{"a":1}', 7],
    [' { "a" : [ 1 , true , null , "x" ] } ', 36],
    ['"a\\"b\\\\"', 8],
    ['"\\u00e9\\n\\t\\/\\b\\f\\r"', 20],
    ['-0.5e+10', 8],
    ['0', 1],
    ['true', 4],
    ['false', 5],
    ['null', 4],
    ['{"a":{"b":[{}]}}', 16],
  ])('reads %s to %i', (text, expected) => {
    const from = skipSpace(text, 0);
    expect(new JsonReader(text, 512).valueEnd(from, 0)).toBe(expected);
    expect(parses(text)).toBe(true);
  });

  it('stops where the value ends: what follows is the caller’s to check', () => {
    expect(end('{"a":1},"b"')).toBe(7);
    expect(end('12 34')).toBe(2);
    // A number is read as far as it goes.
    expect(end('1.5e3x')).toBe(5);
    expect(end('01')).toBe(1);
    expect(end('1.')).toBe(1);
    expect(end('1e')).toBe(1);
  });

  it.each([
    '',
    ' {}',
    '{',
    '{"a"}',
    '{"a":}',
    '{"a" 1}',
    '{"a":1,}',
    '{,"a":1}',
    '{"a":1 "b":2}',
    '{a:1}',
    "{'a':1}",
    '[1,]',
    '[,1]',
    '[1 2]',
    '"abc',
    '"a\\x"',
    '"a\\u12g4"',
    '"a\\u12"',
    '"tab\there"',
    '"line\nbreak"',
    '"nul\u0000"',
    '-',
    '.5',
    '+1',
    'NaN',
    'tru',
    'nul',
    'True',
    '}',
  ])('refuses %j', (text) => {
    expect(end(text)).toBe(-1);
  });

  it('counts the levels around the value against the limit', () => {
    expect(new JsonReader('[[[]]]', 3).valueEnd(0, 0)).toBe(6);
    expect(new JsonReader('[[[]]]', 2).valueEnd(0, 0)).toBe(-1);
    expect(new JsonReader('{"a":[{}]}', 5).valueEnd(0, 2)).toBe(10);
    expect(new JsonReader('{"a":[{}]}', 4).valueEnd(0, 2)).toBe(-1);
  });

  it('reads several values of one text, before and after escapes and control characters', () => {
    const text = '["a\\"b", "c"]\n{"d":"e\\\\"}\t"f"';
    const reader = new JsonReader(text, 512);
    expect(reader.valueEnd(0, 0)).toBe(13);
    expect(reader.valueEnd(14, 0)).toBe(25);
    expect(reader.valueEnd(26, 0)).toBe(29);
    // A control character after a string does not taint it; one inside a later string does.
    const tainted = '["a", "b\u0001"]';
    expect(new JsonReader(tainted, 512).valueEnd(1, 1)).toBe(4);
    expect(new JsonReader(tainted, 512).valueEnd(0, 0)).toBe(-1);
  });

  it('accepts every JSON value JSON.stringify writes, compact or indented', () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 6 }), fc.constantFrom(0, 1, '\t'), (value, indent) => {
        const text = JSON.stringify(value, null, indent);
        expect(end(text)).toBe(text.length);
      }),
      { numRuns: 1000 },
    );
  });

  it('never accepts what JSON.parse refuses (edits of valid JSON)', () => {
    const edit = fc.record({
      at: fc.nat(),
      remove: fc.nat({ max: 3 }),
      insert: fc
        .array(fc.constantFrom(...'{}[]",:\\ ae019.E+-\u0000\u001f\n'), { maxLength: 3 })
        .map((chars) => chars.join('')),
    });
    const seen = { accepted: 0, refused: 0 };
    fc.assert(
      fc.property(
        fc.jsonValue({ maxDepth: 4 }),
        fc.array(edit, { minLength: 1, maxLength: 3 }),
        (value, edits) => {
          let text = JSON.stringify(value);
          for (const { at, remove, insert } of edits) {
            const where = text.length === 0 ? 0 : at % (text.length + 1);
            text = text.slice(0, where) + insert + text.slice(where + remove);
          }
          const read = end(text);
          if (read === text.length) {
            seen.accepted++;
            expect(parses(text), text).toBe(true);
          } else {
            seen.refused++;
            // A value read to its end short of the text: the text parses only if the rest is space.
            if (read !== -1) expect(parses(text)).toBe(skipSpace(text, read) === text.length);
          }
        },
      ),
      { numRuns: 5000 },
    );
    // Both outcomes must be common, or the property checks less than it seems to.
    expect(seen.accepted).toBeGreaterThan(500);
    expect(seen.refused).toBeGreaterThan(500);
  });
});

describe('skipSpace and lastNonSpace', () => {
  it('skip JSON whitespace only', () => {
    expect(skipSpace(' \t\r\n x', 0)).toBe(5);
    expect(skipSpace('\u00a0x', 0)).toBe(0);
    expect(skipSpace('  ', 0)).toBe(2);
    expect(lastNonSpace('x \t\r\n', 5)).toBe(0);
    expect(lastNonSpace('  ', 2)).toBe(-1);
  });
});
