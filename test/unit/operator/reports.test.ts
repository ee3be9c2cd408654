// Cluster-wide status from per-replica reports (ADR 0013): the sum across replicas, gone
// incarnations folded into the totals exactly once (across leader changes too), destination
// health from live replicas, and a model of replicas and leaders that checks the counters never go
// backwards and never count twice. Pure: starts no process.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  add,
  type Counts,
  decodeReport,
  decodeTotals,
  EMPTY_TOTALS,
  foldTotals,
  type ReplicaReport,
  ReportFormatError,
  type ResourceIdentity,
  type Slot,
  slotFolded,
  type StatusTotals,
  sumResource,
  ZERO_COUNTS,
} from '../../../src/operator/reports.ts';
import { neverBackwards, type ResourceStatus } from '../../../src/operator/status.ts';

const KEY = 'AuditPipeline/shop/orders';
const UID = '6f1c3a52-0d7e-4a57-9e53-1f0b8e2c4d11';
const ORDERS: ResourceIdentity = { key: KEY, uid: UID };
const EXPIRY = 60_000;
const NOW = Date.parse('2026-03-01T10:00:00.000Z');

function counts(overrides: Partial<Counts> = {}): Counts {
  return { ...ZERO_COUNTS, ...overrides };
}

interface SlotSpec {
  name?: string;
  rv?: string;
  incarnation: string;
  replica?: string;
  final?: boolean;
  /** Milliseconds before NOW that this resourceVersion was first seen. */
  age?: number;
  received?: number;
  written?: number;
  uid?: string;
  lastEventTime?: string;
  destination?: { ready: boolean; reason: string; message?: string };
}

function slot(spec: SlotSpec): Slot {
  const report: ReplicaReport = {
    incarnation: spec.incarnation,
    replica: spec.replica ?? `pod-${spec.incarnation}`,
    final: spec.final ?? false,
    publishedAt: new Date(NOW).toISOString(),
    sinks: {
      [KEY]: {
        uid: spec.uid ?? UID,
        counts: counts({ received: spec.received ?? 0, written: spec.written ?? 0 }),
        ...(spec.lastEventTime === undefined ? {} : { lastEventTime: spec.lastEventTime }),
        destinations:
          spec.destination === undefined
            ? {}
            : {
                influxdb: {
                  ready: spec.destination.ready,
                  reason: spec.destination.reason as 'Delivered',
                  message: spec.destination.message ?? '',
                  since: new Date(NOW - 5_000).toISOString(),
                },
              },
      },
    },
  };
  return {
    name: spec.name ?? `kao-replica-${spec.incarnation}`,
    resourceVersion: spec.rv ?? '1',
    report,
    observedAt: NOW - (spec.age ?? 0),
  };
}

function received(totals: StatusTotals, slots: readonly Slot[], now = NOW): number {
  return sumResource(ORDERS, totals, slots, now, EXPIRY)?.received ?? 0;
}

function fold(totals: StatusTotals, slots: readonly Slot[], now = NOW): StatusTotals {
  return foldTotals(totals, slots, [ORDERS], now, EXPIRY);
}

describe('the sum across replicas', () => {
  it('adds every replica’s counters to the folded base', () => {
    const totals: StatusTotals = {
      resources: { [KEY]: { uid: UID, base: counts({ received: 100, written: 90 }), folded: {} } },
      incarnations: {},
    };
    const slots = [
      slot({ incarnation: 'a', received: 7, written: 5 }),
      slot({ incarnation: 'b', received: 11, written: 11 }),
    ];
    const sum = sumResource(ORDERS, totals, slots, NOW, EXPIRY);
    expect(sum?.received).toBe(118);
    expect(sum?.written).toBe(106);
    expect(sum?.replicas).toBe(2);
  });

  it('takes the newest lastEventTime of the replicas and the base', () => {
    const totals: StatusTotals = {
      resources: {
        [KEY]: {
          uid: UID,
          base: ZERO_COUNTS,
          lastEventTime: '2026-03-01T09:59:00.000Z',
          folded: {},
        },
      },
      incarnations: {},
    };
    const slots = [
      slot({ incarnation: 'a', lastEventTime: '2026-03-01T09:59:30.000Z' }),
      slot({ incarnation: 'b', lastEventTime: '2026-03-01T09:58:00.000Z' }),
    ];
    expect(sumResource(ORDERS, totals, slots, NOW, EXPIRY)?.lastEventTime).toEqual(
      new Date('2026-03-01T09:59:30.000Z'),
    );
  });

  it('leaves out counts of another object of the same name (deleted and re-created)', () => {
    const slots = [
      slot({ incarnation: 'a', received: 7 }),
      slot({ incarnation: 'b', received: 500, uid: 'an-older-uid' }),
    ];
    expect(received(EMPTY_TOTALS, slots)).toBe(7);
    const stale: StatusTotals = {
      resources: { [KEY]: { uid: 'an-older-uid', base: counts({ received: 9 }), folded: {} } },
      incarnations: {},
    };
    expect(received(stale, slots)).toBe(7);
    expect(fold(stale, slots).resources).toEqual({});
  });

  it('is undefined when no replica runs the sink and nothing was folded', () => {
    expect(sumResource(ORDERS, EMPTY_TOTALS, [], NOW, EXPIRY)).toBeUndefined();
  });
});

describe('destinations across replicas', () => {
  const delivered = { ready: true, reason: 'Delivered' };
  const unauthorized = { ready: false, reason: 'Unauthorized', message: 'HTTP 401: unauthorized' };

  it('fail when they fail on any live replica, naming the replicas', () => {
    const slots = [
      slot({ incarnation: 'a', replica: 'kao-7d9f-x2', destination: delivered }),
      slot({ incarnation: 'b', replica: 'kao-7d9f-q8', destination: unauthorized }),
    ];
    const influxdb = sumResource(ORDERS, EMPTY_TOTALS, slots, NOW, EXPIRY)?.destinations.influxdb;
    expect(influxdb).toMatchObject({
      ready: false,
      reason: 'Unauthorized',
      message: 'HTTP 401: unauthorized',
      failingOn: ['kao-7d9f-q8'],
    });
  });

  it('are delivered when delivered anywhere and failing nowhere, pending when nothing was written', () => {
    const pending = { ready: false, reason: 'Pending' };
    const both = [
      slot({ incarnation: 'a', destination: pending }),
      slot({ incarnation: 'b', destination: delivered }),
    ];
    const d = sumResource(ORDERS, EMPTY_TOTALS, both, NOW, EXPIRY)?.destinations.influxdb;
    expect(d).toMatchObject({ ready: true, reason: 'Delivered', failingOn: [] });
    const idle = [slot({ incarnation: 'a', destination: pending })];
    const p = sumResource(ORDERS, EMPTY_TOTALS, idle, NOW, EXPIRY)?.destinations.influxdb;
    expect(p).toMatchObject({ ready: false, reason: 'Pending', failingOn: [] });
  });

  it('ignore a replica that is gone (final, or not renewed within the expiry), but keep its counts', () => {
    const slots = [
      slot({ incarnation: 'a', destination: delivered, received: 1 }),
      slot({ incarnation: 'b', destination: unauthorized, received: 2, age: EXPIRY + 1 }),
      slot({ incarnation: 'c', destination: unauthorized, received: 4, final: true }),
    ];
    const sum = sumResource(ORDERS, EMPTY_TOTALS, slots, NOW, EXPIRY);
    expect(sum?.destinations.influxdb).toMatchObject({ ready: true, reason: 'Delivered' });
    expect(sum?.replicas).toBe(1);
    expect(sum?.received).toBe(7);
  });
});

describe('folding a gone incarnation', () => {
  const live = slot({ incarnation: 'a', received: 10 });
  const gone = slot({ incarnation: 'b', received: 30, written: 25, age: EXPIRY + 1, rv: '41' });

  it('moves its counts into the base exactly once: the sum does not change, folding again changes nothing', () => {
    const before = received(EMPTY_TOTALS, [live, gone]);
    const once = fold(EMPTY_TOTALS, [live, gone]);
    expect(once.resources[KEY]?.base).toEqual(counts({ received: 30, written: 25 }));
    expect(once.incarnations).toEqual({ b: { slot: gone.name, resourceVersion: '41' } });
    expect(received(once, [live, gone])).toBe(before);
    const twice = fold(once, [live, gone]);
    expect(twice).toEqual(once);
  });

  it('folds a final report at once, without waiting for the expiry', () => {
    const stopped = slot({ incarnation: 'c', received: 5, final: true });
    expect(slotFolded(fold(EMPTY_TOTALS, [stopped]), stopped)).toBe(true);
  });

  it('leaves a live report alone', () => {
    expect(fold(EMPTY_TOTALS, [live])).toEqual(EMPTY_TOTALS);
  });

  it('gives the same totals whichever leader folds, and a new leader after a fold adds nothing', () => {
    // Leader 1 folds and writes; it dies; leader 2 reads the written totals and the same slots.
    const byFirst = fold(EMPTY_TOTALS, [live, gone]);
    const bySecond = fold(byFirst, [live, gone], NOW + 5_000);
    expect(bySecond).toEqual(byFirst);
    // Leader 1's write never landed (a 409, or it died first): leader 2 folds from what it reads.
    expect(fold(EMPTY_TOTALS, [live, gone], NOW + 5_000)).toEqual(byFirst);
  });

  it('counts a folded replica that comes back only beyond what was folded, and folds again only the difference', () => {
    const once = fold(EMPTY_TOTALS, [live, gone]);
    const back = slot({ incarnation: 'b', received: 34, written: 30, rv: '57' });
    expect(received(once, [live, back])).toBe(10 + 34);
    const goneAgain = { ...back, observedAt: NOW - EXPIRY - 1 };
    const again = fold(once, [live, goneAgain]);
    expect(again.resources[KEY]?.base).toEqual(counts({ received: 34, written: 30 }));
    expect(received(again, [live, goneAgain])).toBe(10 + 34);
  });

  it('forgets an incarnation once its slot shows another, and the sum stays', () => {
    const once = fold(EMPTY_TOTALS, [live, gone]);
    const claimed = slot({ incarnation: 'd', name: gone.name, rv: '60', received: 0 });
    const after = fold(once, [live, claimed]);
    expect(after.incarnations).toEqual({});
    expect(after.resources[KEY]?.folded).toEqual({});
    expect(after.resources[KEY]?.base).toEqual(counts({ received: 30, written: 25 }));
    expect(received(after, [live, claimed])).toBe(40);
  });

  it('drops the totals of a resource that is gone', () => {
    const once = fold(EMPTY_TOTALS, [live, gone]);
    expect(foldTotals(once, [live, gone], [], NOW, EXPIRY).resources).toEqual({});
  });
});

describe('status never goes backwards', () => {
  const status = (received: number, lastEventTime?: string): ResourceStatus => ({
    observedGeneration: 1,
    conditions: [],
    received,
    dropped: { policy: 0, namespace: 0, overflow: 0, rejected: 0 },
    deadLettered: { refused: 0, unencodable: 0 },
    written: received,
    failed: 0,
    ...(lastEventTime === undefined ? {} : { lastEventTime }),
  });

  it('keeps counters and lastEventTime at what status showed when the sums lag', () => {
    const held = neverBackwards(status(90, '2026-03-01T09:00:00.000Z'), {
      received: 100,
      written: 95,
      dropped: { policy: 3 },
      lastEventTime: '2026-03-01T09:30:00.000Z',
    });
    expect(held).toMatchObject({
      received: 100,
      written: 95,
      dropped: { policy: 3, namespace: 0 },
      lastEventTime: '2026-03-01T09:30:00.000Z',
    });
  });

  it('takes the sums once they are ahead, and ignores a status that is not one', () => {
    expect(neverBackwards(status(120), { received: 100 }).received).toBe(120);
    expect(neverBackwards(status(7), undefined).received).toBe(7);
    expect(neverBackwards(status(7), { received: 'many' }).received).toBe(7);
  });
});

describe('reading reports and totals', () => {
  it('reads back what it writes', () => {
    const report = slot({
      incarnation: 'a',
      received: 3,
      destination: { ready: true, reason: 'Delivered' },
    }).report;
    expect(decodeReport(JSON.stringify(report))).toEqual(report);
    const totals = fold(EMPTY_TOTALS, [slot({ incarnation: 'b', received: 2, final: true })]);
    expect(decodeTotals(JSON.stringify(totals))).toEqual(totals);
  });

  it.each([
    ['not JSON', '{', /^report: not JSON/],
    [
      'no incarnation',
      '{"replica":"r","final":false,"publishedAt":"x","sinks":{}}',
      /report\.incarnation: must be a string/,
    ],
    [
      'a negative counter',
      `{"incarnation":"a","replica":"r","final":false,"publishedAt":"x","sinks":{"${KEY}":{"uid":"u","counts":{"received":-1},"destinations":{}}}}`,
      /counts\.received: must be a non-negative integer/,
    ],
    [
      'a time that is not one',
      `{"incarnation":"a","replica":"r","final":false,"publishedAt":"x","sinks":{"${KEY}":{"uid":"u","counts":{},"lastEventTime":"soon","destinations":{}}}}`,
      /lastEventTime: must be an RFC 3339 time/,
    ],
  ])('refuses a report with %s, naming the field', (_, json, message) => {
    expect(() => decodeReport(json)).toThrow(ReportFormatError);
    expect(() => decodeReport(json)).toThrow(message);
  });
});

// ---- a model of replicas, slots and leaders ------------------------------------------------------

type Op =
  | { readonly op: 'count'; readonly replica: number; readonly n: number }
  | { readonly op: 'publish'; readonly replica: number }
  | { readonly op: 'crash'; readonly replica: number }
  | { readonly op: 'stop'; readonly replica: number }
  | { readonly op: 'start' }
  | { readonly op: 'pass'; readonly writeLands: boolean }
  | { readonly op: 'wait'; readonly ms: number };

const ops: fc.Arbitrary<Op> = fc.oneof(
  fc.record({
    op: fc.constant('count' as const),
    replica: fc.nat(3),
    n: fc.integer({ min: 1, max: 50 }),
  }),
  fc.record({ op: fc.constant('publish' as const), replica: fc.nat(3) }),
  fc.record({ op: fc.constant('crash' as const), replica: fc.nat(3) }),
  fc.record({ op: fc.constant('stop' as const), replica: fc.nat(3) }),
  fc.record({ op: fc.constant('start' as const) }),
  fc.record({ op: fc.constant('pass' as const), writeLands: fc.boolean() }),
  fc.record({ op: fc.constant('wait' as const), ms: fc.integer({ min: 1_000, max: 40_000 }) }),
);

interface Replica {
  readonly incarnation: string;
  slot: string | undefined;
  counted: number;
}

/**
 * Replicas count and publish into slots (claiming one the totals hold at its current version, or
 * creating one), crash or stop, and a leader (any one: its liveness observations start afresh at
 * every pass, as after a change of leader, or carry over) folds and sums. Returns every sum a
 * pass computed, and the truth at the end.
 */
function simulate(script: readonly Op[]) {
  let now = NOW;
  let rv = 0;
  let incarnations = 0;
  const objects = new Map<string, { resourceVersion: string; report: ReplicaReport }>();
  let totals: StatusTotals = EMPTY_TOTALS;
  const replicas: (Replica | undefined)[] = [];
  // What every incarnation counted, and what its slot last showed.
  const counted = new Map<string, number>();
  const observed = new Map<string, { resourceVersion: string; at: number }>();
  const sums: number[] = [];

  const report = (r: Replica, final: boolean): ReplicaReport => ({
    incarnation: r.incarnation,
    replica: `pod-${r.incarnation}`,
    final,
    publishedAt: new Date(now).toISOString(),
    sinks: {
      [KEY]: { uid: UID, counts: counts({ received: r.counted }), destinations: {} },
    },
  });
  const write = (r: Replica, final: boolean) => {
    if (r.slot === undefined) {
      const free = [...objects].find(
        ([name, o]) =>
          slotFolded(totals, { resourceVersion: o.resourceVersion, report: o.report }) &&
          name !== undefined,
      );
      r.slot = free?.[0] ?? `slot-${objects.size}`;
    }
    objects.set(r.slot, { resourceVersion: String(++rv), report: report(r, final) });
  };
  const start = () => {
    const r: Replica = { incarnation: `i${++incarnations}`, slot: undefined, counted: 0 };
    counted.set(r.incarnation, 0);
    write(r, false);
    const index = replicas.findIndex((x) => x === undefined);
    if (index === -1) replicas.push(r);
    else replicas[index] = r;
  };
  const slots = (): Slot[] =>
    [...objects].map(([name, o]) => {
      const seen = observed.get(name);
      const at = seen?.resourceVersion === o.resourceVersion ? seen.at : now;
      observed.set(name, { resourceVersion: o.resourceVersion, at });
      return { name, resourceVersion: o.resourceVersion, report: o.report, observedAt: at };
    });

  start();
  start();
  for (const step of script) {
    const r = 'replica' in step ? replicas[step.replica % Math.max(1, replicas.length)] : undefined;
    switch (step.op) {
      case 'count':
        if (r === undefined) break;
        r.counted += step.n;
        counted.set(r.incarnation, r.counted);
        break;
      case 'publish':
        if (r !== undefined) write(r, false);
        break;
      case 'crash':
      case 'stop':
        if (r === undefined) break;
        if (step.op === 'stop') write(r, true);
        replicas[replicas.indexOf(r)] = undefined;
        break;
      case 'start':
        start();
        break;
      case 'wait':
        now += step.ms;
        break;
      case 'pass': {
        const current = slots();
        const next = foldTotals(totals, current, [ORDERS], now, EXPIRY);
        if (step.writeLands) totals = next;
        sums.push(received(totals, current, now));
        break;
      }
    }
  }
  // Every replica stops gracefully, and a last pass folds everything.
  for (const r of replicas) if (r !== undefined) write(r, true);
  const current = slots();
  totals = foldTotals(totals, current, [ORDERS], now, EXPIRY);
  sums.push(received(totals, current, now));
  const published = [...objects.values()];
  return { sums, counted: [...counted.values()].reduce((a, b) => a + b, 0), published, totals };
}

describe('a model of replicas and leaders', () => {
  it('never goes backwards and never counts twice: every published count exactly once', () => {
    fc.assert(
      fc.property(fc.array(ops, { maxLength: 80 }), (script) => {
        const { sums, counted } = simulate(script);
        for (let i = 1; i < sums.length; i++) {
          expect(sums[i]).toBeGreaterThanOrEqual(sums[i - 1] as number);
        }
        // Crashed replicas lose what they counted after their last publish: never more is shown.
        expect(sums.at(-1)).toBeLessThanOrEqual(counted);
      }),
      { numRuns: 300 },
    );
  });

  it('counts exactly what was counted when every replica published before it went', () => {
    fc.assert(
      fc.property(fc.array(ops, { maxLength: 80 }), (script) => {
        // Publishing right after counting leaves nothing unpublished for a crash to lose.
        const careful = script.flatMap((step): Op[] =>
          step.op === 'count' ? [step, { op: 'publish', replica: step.replica }] : [step],
        );
        const { sums, counted } = simulate(careful);
        expect(sums.at(-1)).toBe(counted);
      }),
      { numRuns: 300 },
    );
  });

  it('adds the folded base and the slots up to the same total whatever the order of leaders', () => {
    const a = slot({ incarnation: 'a', received: 10, age: EXPIRY + 1, rv: '3' });
    const b = slot({ incarnation: 'b', received: 20, final: true, rv: '4' });
    const c = slot({ incarnation: 'c', received: 5, rv: '5' });
    const orders = [
      [a, b, c],
      [c, b, a],
      [b, a, c],
    ];
    const totals = orders.map((order) => fold(fold(EMPTY_TOTALS, order.slice(0, 1)), order));
    for (const t of totals) expect(received(t, [a, b, c])).toBe(35);
    expect(totals[1]?.resources[KEY]?.base).toEqual(
      add(counts({ received: 10 }), counts({ received: 20 })),
    );
  });
});
