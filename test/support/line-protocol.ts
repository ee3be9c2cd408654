/**
 * Reading back the lines the encoder writes, as influxd's parser splits them: the series key, its
 * tags, the fields and the time. Only for lines of this encoder (field keys without escapes).
 * Starts nothing.
 */

/** The series key of a line: up to the first space that is not escaped. */
export function seriesOf(line: string): string {
  for (let i = 0; i < line.length; i++) {
    if (line[i] === '\\') i++;
    else if (line[i] === ' ') return line.slice(0, i);
  }
  return line;
}

/** The tags of a series key as influxd reads them: `\,`, `\=` and `\ ` lose their backslash. */
export function tagsOf(series: string): Map<string, string> {
  const parts = series.split(/(?<!\\),/).slice(1);
  return new Map(
    parts.map((part) => {
      const [key, value] = part.split(/(?<!\\)=/) as [string, string];
      return [key, value.replace(/\\([,= ])/g, '$1')];
    }),
  );
}

/**
 * The fields of a line, by key: a string field unquoted and unescaped, any other value as
 * written (`2.5`, `15i`).
 */
export function fieldsOf(line: string): Map<string, string> {
  const fields = new Map<string, string>();
  const end = line.lastIndexOf(' ');
  let i = seriesOf(line).length + 1;
  while (i < end) {
    const eq = line.indexOf('=', i);
    const key = line.slice(i, eq);
    i = eq + 1;
    if (line[i] === '"') {
      // From one quote or backslash to the next: linear in the length of the value.
      const parts: string[] = [];
      let from = i + 1;
      SPECIAL.lastIndex = from;
      for (;;) {
        const at = (SPECIAL.exec(line) as RegExpExecArray).index;
        parts.push(line.slice(from, at));
        if (line[at] === '"') {
          i = at + 1;
          break;
        }
        from = at + 1;
        SPECIAL.lastIndex = at + 2;
      }
      fields.set(key, parts.join(''));
    } else {
      const comma = line.indexOf(',', i);
      const stop = comma === -1 || comma > end ? end : comma;
      fields.set(key, line.slice(i, stop));
      i = stop;
    }
    i++;
  }
  return fields;
}

const SPECIAL = /["\\]/g;

/** The time of a line, in nanoseconds. */
export function timeOf(line: string): bigint {
  return BigInt(line.slice(line.lastIndexOf(' ') + 1));
}

/**
 * What a tag value reads back as (docs/influxdb-schema.md, "Escaping"): the value itself, except
 * that backslashes right before `,`, `=`, a space or the end read as U+FFFD, and a line break as
 * the two characters `\n` or `\r`.
 */
export function tagAsStored(value: string): string {
  return value
    .toWellFormed()
    .replace(/\\+(?=[,= ]|$)/g, (run) => '\ufffd'.repeat(run.length))
    .replace(/\n/g, '\\n')
    .replace(/\r/g, '\\r');
}
