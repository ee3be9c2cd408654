// The limits of a point against a real influxd 2.7 (built by scripts/build-influxd.sh, started by
// test/harness/influxd.ts, one server for the file): the times and key lengths influxd accepts,
// measured with raw line protocol, and the encoder's points at those limits, written through the
// InfluxDB output and read back with Flux: the first and last point times, and tags cut to fit the
// series key with their whole value in `<tag>_full`.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AuditEvent, POINT_TIME_RANGE } from '../../../src/audit/types.ts';
import {
  CUT_MARKER,
  escapeTag,
  FIELD_KEYS,
  LineProtocolEncoder,
  MAX_SERIES_KEY_BYTES,
  MAX_TAG_VALUE_BYTES,
} from '../../../src/outputs/influxdb/line-protocol.ts';
import { InfluxOutput } from '../../../src/outputs/influxdb/writer.ts';
import { TAG_NAMES } from '../../../src/sinks/types.ts';
import { destinationOn, type InfluxServer, startInfluxd } from '../../harness/influxd.ts';
import { tagAsStored } from '../../support/line-protocol.ts';
import { recordedEvents } from '../../support/recorded.ts';

let server: InfluxServer;
let runs = 0;

beforeAll(async () => {
  server = await startInfluxd();
});

afterAll(async () => {
  await server?.dispose();
});

/** Posts raw line protocol; returns the status and influxd's message. */
async function writeLines(body: string): Promise<{ status: number; message: string }> {
  const res = await fetch(
    `${server.url}/api/v2/write?org=${server.org}&bucket=${server.bucket}&precision=ns`,
    { method: 'POST', headers: { authorization: `Token ${server.token}` }, body },
  );
  const text = await res.text();
  return {
    status: res.status,
    message: text === '' ? '' : (JSON.parse(text) as { message: string }).message,
  };
}

// models.MinNanoTime and MaxNanoTime: int64 without its two lowest values and its highest.
const MIN_NANO = -(2n ** 63n) + 2n;
const MAX_NANO = 2n ** 63n - 2n;

// Flux's range stop is exclusive: the last time it can ask for is MaxNanoTime itself.
const WHOLE_RANGE = 'start: 1677-09-21T00:12:43.145224194Z, stop: 2262-04-11T23:47:16.854775806Z';

describe("influxd's own limits, which the encoder's constants follow", () => {
  it('stores times from MinNanoTime to MaxNanoTime and refuses one beyond either', async () => {
    expect((await writeLines(`limit_probe f=1 ${MIN_NANO}`)).status).toBe(204);
    expect((await writeLines(`limit_probe f=1 ${MAX_NANO}`)).status).toBe(204);
    for (const outside of [MIN_NANO - 1n, MAX_NANO + 1n]) {
      const { status, message } = await writeLines(`limit_probe f=1 ${outside}`);
      expect(status).toBe(400);
      expect(message).toContain('time outside range');
    }
  });

  it('refuses a whole write when one of its points is out of range', async () => {
    const { status } = await writeLines(
      `limit_probe,t=a f=1 100\nlimit_probe,t=b f=1 ${MAX_NANO + 1n}\nlimit_probe,t=c f=1 101`,
    );
    expect(status).toBe(400);
    const rows = await server.query(`from(bucket: "${server.bucket}")
      |> range(start: 0, stop: 1970-01-01T00:00:01Z)
      |> filter(fn: (r) => r._measurement == "limit_probe")`);
    expect(rows).toEqual([]);
  });

  it('takes a series key, "#!~#" and a field key of 65,535 bytes, and refuses one byte more', async () => {
    const longestField = Math.max(...FIELD_KEYS.map((k) => k.length));
    const field = 'f'.repeat(longestField);
    // `limit_probe,t=` is 14 bytes; the value fills the series key to MAX_SERIES_KEY_BYTES.
    const series = (bytes: number) => `limit_probe,t=${'x'.repeat(bytes - 14)}`;
    expect(MAX_SERIES_KEY_BYTES + 4 + longestField).toBe(65_535);
    expect((await writeLines(`${series(MAX_SERIES_KEY_BYTES)} ${field}=1 200`)).status).toBe(204);
    const over = await writeLines(`${series(MAX_SERIES_KEY_BYTES + 1)} ${field}=1 201`);
    expect(over.status).toBe(400);
    expect(over.message).toContain('max key length exceeded: 65536 > 65535');
  });

  it('counts the escapes of a tag value in the key length', async () => {
    const field = 'f'.repeat(23);
    // Each `\,` is two bytes of the key for one character of the value: 32,747 of them fill it.
    const commas = (count: number) => `limit_probe,t=${'\\,'.repeat(count)}`;
    expect(14 + 2 * 32_747).toBe(MAX_SERIES_KEY_BYTES);
    expect((await writeLines(`${commas(32_747)} ${field}=1 202`)).status).toBe(204);
    expect((await writeLines(`${commas(32_748)} ${field}=1 203`)).status).toBe(400);
  });
});

/** A recorded event made unique, with `overrides`. */
function eventWith(overrides: Partial<AuditEvent>): AuditEvent {
  const recorded = recordedEvents()[5] as AuditEvent;
  return { ...recorded, auditID: `${recorded.auditID}-${++runs}`, ...overrides };
}

/** Writes events through the InfluxDB output of a sink of their own; returns the sink label. */
async function write(
  events: AuditEvent[],
  staticTags: Record<string, string> = {},
): Promise<string> {
  const sink = `limits-${++runs}`;
  await new InfluxOutput(destinationOn(server, { staticTags }), sink, () => server.token).write(
    events,
  );
  return sink;
}

describe("the encoder's points at those limits", () => {
  it('writes the first and the last stageTimestamp the receiver accepts, at their own microsecond', async () => {
    const first = eventWith({ stageTimestamp: POINT_TIME_RANGE.earliest });
    const last = eventWith({ stageTimestamp: POINT_TIME_RANGE.latest });
    const sink = await write([first, last]);
    const rows = await server.query(`from(bucket: "${server.bucket}")
      |> range(${WHOLE_RANGE})
      |> filter(fn: (r) => r.sink == "${sink}" and r._field == "audit_id")
      |> map(fn: (r) => ({ r with ns: string(v: int(v: r._time)) }))`);
    const nanos = new Map(rows.map((r) => [r._value, BigInt(r.ns as string)]));
    const slot = (id: string, micros: bigint) => (nanos.get(id) as bigint) - micros * 1000n;
    expect(slot(first.auditID, POINT_TIME_RANGE.earliestMicros)).toBeGreaterThanOrEqual(0n);
    expect(slot(first.auditID, POINT_TIME_RANGE.earliestMicros)).toBeLessThan(1000n);
    expect(slot(last.auditID, POINT_TIME_RANGE.latestMicros)).toBeGreaterThanOrEqual(0n);
    expect(slot(last.auditID, POINT_TIME_RANGE.latestMicros)).toBeLessThan(1000n);
  });

  it('cuts every tag far too long to fit, keeps each whole in <tag>_full, and reads back as documented', async () => {
    const long = (unit: string) => unit.repeat(Math.ceil(70_000 / unit.length));
    const event = eventWith({
      verb: long('\\,'),
      user: { username: long('ünï😀 '), groups: ['g'] },
      objectRef: {
        apiGroup: long('a=b'),
        apiVersion: long('v'),
        resource: long('r'),
        subresource: long('line\nbreak'),
        namespace: long('€'),
        name: 'n',
      },
      annotations: { 'authorization.k8s.io/decision': long('"quoted"') },
    });
    // A static tag of 30,000 bytes leaves every event tag less than 4,096 bytes.
    const staticTags = { cluster: 'c'.repeat(30_000) };
    const share = new LineProtocolEncoder({
      measurement: 'kubernetes_audit',
      tags: TAG_NAMES,
      staticTags,
      sink: 'x',
    }).maxTagValueBytes;
    expect(share).toBeLessThan(MAX_TAG_VALUE_BYTES);
    const sink = await write([event], staticTags);

    const whole: Record<string, string> = {
      verb: event.verb,
      user: event.user.username as string,
      api_group: event.objectRef?.apiGroup as string,
      api_version: event.objectRef?.apiVersion as string,
      resource: event.objectRef?.resource as string,
      subresource: event.objectRef?.subresource as string,
      namespace: event.objectRef?.namespace as string,
      decision: event.annotations?.['authorization.k8s.io/decision'] as string,
    };
    const escaped = (column: string) => `${column}: http.pathEscape(inputString: r.${column})`;
    const rows = await server.query(`import "http"
      from(bucket: "${server.bucket}")
      |> range(start: 0)
      |> filter(fn: (r) => r.sink == "${sink}" and r._field =~ /_full$/)
      |> map(fn: (r) => ({ r with _value: http.pathEscape(inputString: r._value),
          ${Object.keys(whole).map(escaped).join(', ')} }))`);
    const byField = new Map(rows.map((r) => [String(r._field), r]));
    expect([...byField.keys()].sort()).toEqual(
      Object.keys(whole)
        .map((t) => `${t}_full`)
        .sort(),
    );
    for (const [tag, value] of Object.entries(whole)) {
      const row = byField.get(`${tag}_full`) as Record<string, unknown>;
      expect(decodeURIComponent(row._value as string), tag).toBe(value);
      const stored = decodeURIComponent(row[tag] as string);
      expect(Buffer.byteLength(escapeTag(stored)), tag).toBeLessThanOrEqual(share);
      expect(stored, tag).toBe(tagAsStored(`${cutPrefix(value, stored)}${CUT_MARKER}`));
    }
  });
});

/**
 * The beginning of `value`, whole characters, that a cut tag read back as `stored` holds: found by
 * its length, since a longer beginning never reads back shorter.
 */
function cutPrefix(value: string, stored: string): string {
  const chars = [...value];
  let low = 0;
  let high = chars.length;
  while (low < high) {
    const mid = Math.ceil((low + high) / 2);
    const length = tagAsStored(`${chars.slice(0, mid).join('')}${CUT_MARKER}`).length;
    if (length <= stored.length) low = mid;
    else high = mid - 1;
  }
  return chars.slice(0, low).join('');
}
