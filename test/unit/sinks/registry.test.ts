// The sink registry over real in-memory queues and in-test outputs: routing into queues, delivery,
// status, live changes, overflow, drain, and the end of a shutdown's drain over spools in a
// temporary directory. Starts no process.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { parseAuditPayload } from '../../../src/audit/parse.ts';
import type { AuditEvent } from '../../../src/audit/types.ts';
import { DEFAULT_BACKOFF } from '../../../src/outputs/delivery.ts';
import { type Output, OutputError } from '../../../src/outputs/types.ts';
import {
  DeadLetterStore,
  deadLetterPath,
  readDeadLetters,
} from '../../../src/sinks/dead-letter.ts';
import { SinkRegistry } from '../../../src/sinks/registry.ts';
import { sinkFromResource } from '../../../src/sinks/spec.ts';
import type { Sink } from '../../../src/sinks/types.ts';
import { openQueue, type SharedEncodings, type SinkQueue } from '../../../src/spool/index.ts';
import { recordedBatches, recordedEvents } from '../../support/recorded.ts';
import { pipelineResource } from '../../support/resources.ts';
import { eventually } from '../../support/wait.ts';

const EVENTS: AuditEvent[] = recordedEvents();

const SETTINGS = { clusterWideNamespaces: ['kube-audit'], requireDestination: false };

function pipeline(namespace: string, name: string, level = 'Metadata', extra: object = {}): Sink {
  return sinkFromResource(
    pipelineResource({ policy: { rules: [{ level }] }, ...extra }, namespace, name),
    SETTINGS,
  );
}

/** An output that records what it got, and can be made to fail. */
class RecordingOutput implements Output {
  readonly kind = 'file' as const;
  readonly target: string;
  readonly got: AuditEvent[] = [];
  failing: OutputError | undefined;
  closed = false;
  constructor(target: string) {
    this.target = target;
  }
  write(events: readonly AuditEvent[]): Promise<void> {
    if (this.failing !== undefined) return Promise.reject(this.failing);
    this.got.push(...events);
    return Promise.resolve();
  }
  close(): Promise<void> {
    this.closed = true;
    return Promise.resolve();
  }
}

let registries: SinkRegistry[] = [];
afterEach(async () => {
  await Promise.all(registries.map((r) => r.close()));
  registries = [];
});

/** What a sink's queue was given to append: its events and the encodings shared with others. */
type Appended = { sink: string; events: readonly AuditEvent[]; shared?: SharedEncodings };

function setup(maxBytes = 10 * 1024 * 1024, unopenable = new Set<string>(), appended?: Appended[]) {
  const outputs = new Map<string, RecordingOutput[]>();
  // The real queue, its appends noted first.
  const noting = (key: string, queue: SinkQueue): SinkQueue =>
    new Proxy(queue, {
      get(target, property) {
        if (property === 'append') {
          return (events: readonly AuditEvent[], shared?: SharedEncodings) => {
            appended?.push({ sink: key, events, ...(shared === undefined ? {} : { shared }) });
            return target.append(events, shared);
          };
        }
        const value: unknown = Reflect.get(target, property);
        return typeof value === 'function'
          ? (value as (...args: unknown[]) => unknown).bind(target)
          : value;
      },
    });
  const registry = new SinkRegistry({
    routing: { allowSecretPayloads: false },
    factory: {
      openQueue: (sink) =>
        unopenable.has(sink.key)
          ? Promise.reject(new Error('EACCES: permission denied'))
          : openQueue({ maxBytes }).then((queue) => noting(sink.key, queue)),
      createOutputs: (sink) => {
        const output = new RecordingOutput(
          `${sink.key}#${(outputs.get(sink.key)?.length ?? 0) + 1}`,
        );
        outputs.set(sink.key, [...(outputs.get(sink.key) ?? []), output]);
        return Promise.resolve([output]);
      },
    },
    idleWaitMs: 5,
    backoff: { ...DEFAULT_BACKOFF, initialMs: 5, maxMs: 5, permanentMs: 5 },
  });
  registries.push(registry);
  const latest = (key: string) => outputs.get(key)?.at(-1) as RecordingOutput;
  return { registry, outputs, latest };
}

// In the recorded events, objectRef.namespace agrees with the namespace each request addressed.
const inNamespace = (ns: string) => EVENTS.filter((e) => e.objectRef?.namespace === ns);

describe('sink registry', () => {
  it('routes each event to the sinks whose scope and policy keep it, and delivers them', async () => {
    const { registry, latest } = setup();
    const shop = pipeline('shop', 'orders');
    const billing = pipeline('billing', 'ledger');
    await registry.apply([shop, billing]);
    const result = await registry.ingest(EVENTS, { kind: 'all' });
    expect(result).toEqual({ ok: true, accepted: EVENTS.length });
    const shopIDs = new Set(inNamespace('shop').map((e) => e.auditID));
    await eventually(
      'every shop event at the shop output',
      () => latest(shop.key).got.length === shopIDs.size,
      2_000,
      5,
    );
    expect(new Set(latest(shop.key).got.map((e) => e.auditID))).toEqual(shopIDs);
    expect(
      latest(shop.key).got.every((e) => e.level === 'Metadata' && e.requestObject === undefined),
    ).toBe(true);
    const status = registry.status(shop.key);
    expect(status).toMatchObject({ received: EVENTS.length, written: shopIDs.size });
    expect(status?.dropped.namespace).toBe(EVENTS.length - shopIDs.size);
    expect(status?.destinations.file).toMatchObject({ ready: true, reason: 'Delivered' });
  });

  it('hands the queues the text an event came in when a sink keeps it as it came', async () => {
    const appended: Appended[] = [];
    const { registry } = setup(undefined, undefined, appended);
    const all = pipeline('kube-audit', 'all', 'RequestResponse');
    const brief = pipeline('kube-audit', 'brief', 'Metadata');
    await registry.apply([all, brief]);
    // Texts that parse to the events but that serialising them would not give.
    const sources = EVENTS.map((event) => JSON.stringify(event, null, 0).replace(/^\{/, '{ '));
    await registry.ingest(EVENTS, { kind: 'all' }, { sources });
    const of = (sink: Sink) => appended.find((a) => a.sink === sink.key) as Appended;
    const whole = of(all);
    const trimmed = of(brief);
    expect(whole.shared).toBe(trimmed.shared);
    // Every recorded event is kept whole by the RequestResponse sink: its text as received.
    for (const [i, event] of EVENTS.entries()) {
      expect(whole.events).toContain(event);
      expect(whole.shared?.get(event)?.json).toBe(sources[i]);
    }
    // The Metadata sink's trimmed copies are serialised by the queue, as before.
    const copies = trimmed.events.filter((event) => !EVENTS.includes(event));
    expect(copies.length).toBeGreaterThan(0);
    for (const copy of copies) {
      const json = trimmed.shared?.get(copy)?.json;
      expect(sources).not.toContain(json);
      expect(JSON.parse(json ?? '')).toEqual(copy);
    }
  });

  it('hands the queues the text a bodiless event came in with its level replaced, for copies that differ only in level', async () => {
    const appended: Appended[] = [];
    const { registry } = setup(undefined, undefined, appended);
    const brief = pipeline('kube-audit', 'brief', 'Metadata');
    const orders = pipeline('shop', 'orders', 'Metadata');
    await registry.apply([brief, orders]);
    let copies = 0;
    for (const batch of recordedBatches()) {
      // As the receiver parses when no sink keeps a body: the events come without them.
      const payload = parseAuditPayload(batch, undefined, { omitBodies: true });
      appended.length = 0;
      await registry.ingest(payload.events, { kind: 'all' }, payload);
      for (const { events, shared } of appended) {
        for (const copy of events) {
          const i = payload.events.findIndex((e) => e.auditID === copy.auditID);
          const event = payload.events[i] as AuditEvent;
          const json = shared?.get(copy)?.json;
          if (copy === event) {
            expect(json).toBe(payload.sources?.[i]);
          } else {
            copies++;
            expect(copy.level).toBe('Metadata');
            expect(json).toBe(payload.levelled?.at(i, 'Metadata'));
            expect(JSON.stringify(JSON.parse(json ?? ''))).toBe(JSON.stringify(copy));
          }
        }
      }
    }
    expect(copies).toBeGreaterThan(10);
  });

  it('serialises a trimmed copy of an event that has bodies', async () => {
    const appended: Appended[] = [];
    const { registry } = setup(undefined, undefined, appended);
    await registry.apply([pipeline('kube-audit', 'brief', 'Metadata')]);
    const [batch] = recordedBatches();
    const payload = parseAuditPayload(batch ?? '');
    await registry.ingest(payload.events, { kind: 'all' }, payload);
    const [{ events, shared } = { events: [] }] = appended;
    const trimmed = events.filter((copy) => !payload.events.includes(copy));
    expect(trimmed.length).toBeGreaterThan(0);
    for (const copy of trimmed) {
      const json = shared?.get(copy)?.json ?? JSON.stringify(copy);
      expect(json).not.toContain('Object"');
      expect(JSON.parse(json)).toEqual(copy);
    }
  });

  it('says whether a sink of the target may keep a body, as policies change', async () => {
    const { registry } = setup();
    const shop = pipeline('shop', 'orders');
    const billing = pipeline('billing', 'ledger', 'None', {
      policy: { rules: [{ level: 'Request', verbs: ['create'] }, { level: 'Metadata' }] },
    });
    await registry.apply([shop]);
    const all = { kind: 'all' } as const;
    expect(registry.keepsBodies(all)).toBe(false);
    expect(registry.keepsBodies({ kind: 'sink', key: shop.key })).toBe(false);
    await registry.apply([shop, billing]);
    expect(registry.keepsBodies(all)).toBe(true);
    expect(registry.keepsBodies({ kind: 'sink', key: shop.key })).toBe(false);
    expect(registry.keepsBodies({ kind: 'sink', key: billing.key })).toBe(true);
    await registry.apply([shop, pipeline('billing', 'ledger', 'RequestResponse')]);
    expect(registry.keepsBodies(all)).toBe(true);
    await registry.apply([]);
    expect(registry.keepsBodies(all)).toBe(false);
  });

  it('applies every other sink when one cannot start, then reports that one', async () => {
    const broken = pipeline('shop', 'orders');
    const fine = pipeline('billing', 'ledger');
    const gone = pipeline('ops', 'old');
    const { registry } = setup(undefined, new Set([broken.key]));
    await registry.apply([gone]);
    await expect(registry.apply([broken, fine])).rejects.toThrow(
      `${broken.key}: EACCES: permission denied`,
    );
    expect(registry.hasSink(fine.key)).toBe(true);
    expect(registry.hasSink(gone.key)).toBe(false);
    expect(registry.hasSink(broken.key)).toBe(false);
  });

  it("keeps each sink's final status readable after close, for the last status write", async () => {
    const { registry, latest } = setup();
    const shop = pipeline('shop', 'orders');
    await registry.apply([shop]);
    await registry.ingest(EVENTS, { kind: 'all' });
    const kept = inNamespace('shop').length;
    await eventually(
      'the kept events at the shop output',
      () => latest(shop.key).got.length === kept,
      2_000,
      5,
    );
    await registry.close(AbortSignal.timeout(1_000));
    expect(registry.hasSink(shop.key)).toBe(false);
    expect(registry.status(shop.key)).toMatchObject({ received: EVENTS.length, written: kept });
  });

  it('applies a policy change to the next event without restarting the outputs', async () => {
    const { registry, outputs, latest } = setup();
    const before = pipeline('shop', 'orders', 'Metadata');
    await registry.apply([before]);
    await registry.apply([pipeline('shop', 'orders', 'None')]);
    await registry.ingest(EVENTS, { kind: 'all' });
    expect(registry.status(before.key)?.dropped.policy).toBeGreaterThan(0);
    expect(outputs.get(before.key)).toHaveLength(1);
    expect(latest(before.key).got).toEqual([]);
  });

  it('moves queued events to a new destination when the destination changes', async () => {
    const { registry, outputs } = setup();
    const first = pipeline('shop', 'orders');
    await registry.apply([first]);
    const original = outputs.get(first.key)?.[0] as RecordingOutput;
    original.failing = new OutputError('UNREACHABLE', 'down', { retryable: true });
    await registry.ingest(EVENTS, { kind: 'all' });
    const moved = pipeline('shop', 'orders', 'Metadata', {
      webhook: { clientConfig: { url: 'https://audit.example.com/in' } },
    });
    await registry.apply([moved]);
    expect(original.closed).toBe(true);
    const replacement = outputs.get(first.key)?.[1] as RecordingOutput;
    await eventually(
      'every shop event at the replacement output',
      () => replacement.got.length === inNamespace('shop').length,
      2_000,
      5,
    );
    expect(original.got).toEqual([]);
  });

  it('reports a failing destination in status and keeps its events queued', async () => {
    const { registry, latest } = setup();
    const shop = pipeline('shop', 'orders');
    await registry.apply([shop]);
    latest(shop.key).failing = new OutputError('UNAUTHORIZED', 'bad token', { retryable: false });
    await registry.ingest(EVENTS, { kind: 'all' });
    await eventually(
      'a failed write of the shop sink',
      () => (registry.status(shop.key)?.failed ?? 0) > 0,
      2_000,
      5,
    );
    expect(registry.status(shop.key)?.destinations.file).toMatchObject({
      ready: false,
      reason: 'UNAUTHORIZED',
    });
    expect(registry.queueDepths().get(shop.key)).toBe(inNamespace('shop').length);
    latest(shop.key).failing = undefined;
    await eventually(
      'an empty shop queue',
      () => registry.queueDepths().get(shop.key) === 0,
      2_000,
      5,
    );
    expect(latest(shop.key).got).toHaveLength(inNamespace('shop').length);
  });

  it('drops a full sink share on the fan-in endpoint, counted as overflow, without blocking the others', async () => {
    const { registry, latest } = setup(1024 * 1024 + 1);
    const stuck = pipeline('kube-audit', 'everything', 'RequestResponse');
    const shop = pipeline('shop', 'orders');
    await registry.apply([stuck, shop]);
    latest(stuck.key).failing = new OutputError('UNREACHABLE', 'down', { retryable: true });
    let overflowed = false;
    for (let i = 0; i < 200 && !overflowed; i++) {
      const batch = EVENTS.map((e) => ({ ...e, auditID: `${e.auditID}-${i}` }));
      expect((await registry.ingest(batch, { kind: 'all' })).ok).toBe(true);
      overflowed = (registry.status(stuck.key)?.dropped.overflow ?? 0) > 0;
    }
    expect(overflowed).toBe(true);
    await eventually(
      'an empty shop queue',
      () => registry.queueDepths().get(shop.key) === 0,
      2_000,
      5,
    );
    expect(registry.status(shop.key)?.dropped.overflow).toBe(0);
  });

  it('answers "full" on the fan-in endpoint when no sink took its share, counting nothing twice', async () => {
    const { registry, latest } = setup(1024 * 1024 + 1);
    const stuck = pipeline('kube-audit', 'everything', 'RequestResponse');
    const elsewhere = pipeline('nowhere', 'quiet');
    await registry.apply([stuck, elsewhere]);
    latest(stuck.key).failing = new OutputError('UNREACHABLE', 'down', { retryable: true });
    let result;
    let accepted = 0;
    for (let i = 0; i < 200; i++) {
      const batch = EVENTS.map((e) => ({ ...e, auditID: `${e.auditID}-${i}` }));
      result = await registry.ingest(batch, { kind: 'all' });
      if (!result.ok) break;
      accepted += batch.length;
    }
    expect(result).toMatchObject({ ok: false, reason: 'full', retryAfterSeconds: 1 });
    // Until there is room again, the receiver may refuse without reading: this sink still refuses,
    // and the other never refused anything, so only the stuck sink's own endpoint says so.
    expect(registry.refusing({ kind: 'sink', key: stuck.key })).toBe(1);
    expect(registry.refusing({ kind: 'all' })).toBeUndefined();
    // Sent back, not dropped: the sender retries it, and the counters wait for that.
    expect(registry.status(stuck.key)).toMatchObject({
      received: accepted,
      dropped: { overflow: 0 },
    });
    expect(registry.status(elsewhere.key)?.received).toBe(accepted);
  });

  it('answers "full" on a full sink own endpoint', async () => {
    const { registry, latest } = setup(1024 * 1024 + 1);
    const stuck = pipeline('kube-audit', 'everything', 'RequestResponse');
    await registry.apply([stuck]);
    latest(stuck.key).failing = new OutputError('UNREACHABLE', 'down', { retryable: true });
    let result;
    for (let i = 0; i < 200; i++) {
      const batch = EVENTS.map((e) => ({ ...e, auditID: `${e.auditID}-${i}` }));
      result = await registry.ingest(batch, { kind: 'sink', key: stuck.key });
      if (!result.ok) break;
    }
    expect(result).toMatchObject({ ok: false, reason: 'full' });
  });

  it('removes a deleted sink after delivering what it had queued', async () => {
    const { registry, latest } = setup();
    const shop = pipeline('shop', 'orders');
    await registry.apply([shop]);
    const output = latest(shop.key);
    await registry.ingest(EVENTS, { kind: 'all' });
    await registry.apply([]);
    // Gone from routing at once; its queue drains in the background.
    expect(registry.hasSink(shop.key)).toBe(false);
    await eventually('the output to be closed', () => output.closed, 2_000, 5);
    expect(output.got).toHaveLength(inNamespace('shop').length);
  });

  it('applies the next change at once while a deleted sink still drains to a stuck destination', async () => {
    const { registry, latest } = setup();
    const stuck = pipeline('shop', 'orders');
    const other = pipeline('billing', 'ledger', 'Metadata');
    await registry.apply([stuck, other]);
    latest(stuck.key).failing = new OutputError('UNREACHABLE', 'down', { retryable: true });
    await registry.ingest(EVENTS, { kind: 'all' });
    const started = Date.now();
    await registry.apply([other]);
    await registry.apply([pipeline('billing', 'ledger', 'None')]);
    expect(Date.now() - started).toBeLessThan(500);
    await registry.ingest(EVENTS, { kind: 'all' });
    expect(registry.status(other.key)?.dropped.policy).toBe(inNamespace('billing').length);
    // Created again, the sink reopens its spool once the old one let go of it.
    await registry.apply([stuck, other]);
    expect(registry.hasSink(stuck.key)).toBe(true);
  });

  it('routes each event only to its own tenant among many, with every counter as if all were asked', async () => {
    const { registry, latest } = setup();
    const tenants = Array.from({ length: 50 }, (_, i) => pipeline(`tenant-${i}`, 'trail'));
    const cluster = pipeline('kube-audit', 'everything');
    await registry.apply([...tenants, cluster]);
    const batch = EVENTS.map((e, i) => {
      const namespace = `tenant-${i % 60}`;
      return e.objectRef?.namespace === undefined
        ? e
        : {
            ...e,
            requestURI: e.requestURI.replace(/\/namespaces\/[^/]+/, `/namespaces/${namespace}`),
            objectRef: { ...e.objectRef, namespace },
          };
    });
    await registry.ingest(batch, { kind: 'all' });
    for (const [i, tenant] of tenants.entries()) {
      const own = batch.filter(
        (e) => e.objectRef?.namespace === `tenant-${i}` && e.requestURI.includes('/namespaces/'),
      );
      await eventually(
        "the tenant's own events at its output",
        () => latest(tenant.key).got.length === own.length,
        2_000,
        5,
      );
      expect(latest(tenant.key).got.map((e) => e.auditID)).toEqual(own.map((e) => e.auditID));
      expect(registry.status(tenant.key)).toMatchObject({
        received: batch.length,
        dropped: { namespace: batch.length - own.length, policy: 0 },
      });
    }
    await eventually(
      'the whole batch at the cluster output',
      () => latest(cluster.key).got.length === batch.length,
      2_000,
      5,
    );
    expect(registry.status(cluster.key)?.dropped.namespace).toBe(0);
  });

  it('drains every queue on close', async () => {
    const { registry, latest } = setup();
    const shop = pipeline('shop', 'orders');
    await registry.apply([shop]);
    const output = latest(shop.key);
    await registry.ingest(EVENTS, { kind: 'all' });
    await registry.close(AbortSignal.timeout(2_000));
    expect(output.got).toHaveLength(inNamespace('shop').length);
  });
});

/** A destination that never answers: each write waits until its abort signal fires. */
class SilentOutput implements Output {
  readonly kind = 'file' as const;
  readonly target = 'silent';
  inFlight = 0;
  aborted = 0;
  write(_events: readonly AuditEvent[], signal?: AbortSignal): Promise<void> {
    this.inFlight++;
    return new Promise((_resolve, reject) => {
      signal?.addEventListener(
        'abort',
        () => {
          this.inFlight--;
          this.aborted++;
          reject(new OutputError('UNREACHABLE', 'request aborted', { retryable: true }));
        },
        { once: true },
      );
    });
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

/** A destination that answers every write after `ms`. */
class SlowOutput extends RecordingOutput {
  readonly #ms: number;
  constructor(ms: number) {
    super('slow');
    this.#ms = ms;
  }
  override async write(events: readonly AuditEvent[]): Promise<void> {
    await new Promise((resolve) => setTimeout(resolve, this.#ms));
    await super.write(events);
  }
}

describe('sink registry at shutdown', () => {
  const dirs: string[] = [];
  afterEach(async () => {
    for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
  });

  /** A registry whose sinks spool under `dir`, with outputs from `make`. */
  function durable(dir: string, make: () => Output): SinkRegistry {
    const registry = new SinkRegistry({
      routing: { allowSecretPayloads: false },
      factory: {
        openQueue: (sink) =>
          openQueue({ dir: join(dir, sink.key.replaceAll('/', '_')), maxBytes: 10 * 1024 * 1024 }),
        createOutputs: () => Promise.resolve([make()]),
      },
      idleWaitMs: 5,
      backoff: { ...DEFAULT_BACKOFF, initialMs: 5, maxMs: 5, permanentMs: 5 },
    });
    registries.push(registry);
    return registry;
  }

  it('aborts writes in flight at the deadline, counts no failure, and leaves every event to the next start', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'kao-registry-'));
    dirs.push(dir);
    const shop = pipeline('shop', 'orders');
    const billing = pipeline('billing', 'ledger');
    const silent: SilentOutput[] = [];
    const first = durable(dir, () => {
      const output = new SilentOutput();
      silent.push(output);
      return output;
    });
    await first.apply([shop, billing]);
    await first.ingest(EVENTS, { kind: 'all' });
    await eventually(
      'a write in flight to each sink',
      () => silent.every((o) => o.inFlight === 1),
      2_000,
      5,
    );

    const deadline = new AbortController();
    let closed = false;
    const closing = first.close(deadline.signal).finally(() => (closed = true));
    await new Promise((resolve) => setTimeout(resolve, 50));
    // Draining: the writes wait for their answer until the deadline.
    expect(closed).toBe(false);
    await expect(first.ingest(EVENTS, { kind: 'all' })).rejects.toThrow('shutting down');
    deadline.abort();
    expect(await closing).toEqual({
      cutOff: true,
      undelivered: [
        { sink: shop.key, destinations: { file: inNamespace('shop').length } },
        { sink: billing.key, destinations: { file: inNamespace('billing').length } },
      ],
    });
    expect(silent.map((o) => o.aborted)).toEqual([1, 1]);
    for (const sink of [shop, billing]) {
      expect(first.status(sink.key)).toMatchObject({ failed: 0, written: 0 });
    }

    // The next start delivers each of them, once.
    const recording: RecordingOutput[] = [];
    const second = durable(dir, () => {
      const output = new RecordingOutput('working');
      recording.push(output);
      return output;
    });
    await second.apply([shop, billing]);
    const [toShop, toBilling] = recording as [RecordingOutput, RecordingOutput];
    await eventually(
      'a delivery to each sink',
      () => toShop.got.length > 0 && toBilling.got.length > 0,
      2_000,
      5,
    );
    expect(await second.close(AbortSignal.timeout(2_000))).toEqual({
      cutOff: false,
      undelivered: [],
    });
    expect(toShop.got.map((e) => e.auditID)).toEqual(inNamespace('shop').map((e) => e.auditID));
    expect(toBilling.got.map((e) => e.auditID)).toEqual(
      inNamespace('billing').map((e) => e.auditID),
    );
  });

  it('drains a slow destination completely when it answers before the deadline', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'kao-registry-'));
    dirs.push(dir);
    const shop = pipeline('shop', 'orders');
    const slow = new SlowOutput(30);
    const registry = durable(dir, () => slow);
    await registry.apply([shop]);
    // Batches of one: several slow writes, each well inside the deadline.
    for (const event of inNamespace('shop').slice(0, 5)) {
      await registry.ingest([event], { kind: 'sink', key: shop.key });
    }
    const deadline = new AbortController();
    expect(await registry.close(deadline.signal)).toEqual({ cutOff: false, undelivered: [] });
    expect(slow.got).toHaveLength(5);
    expect(registry.status(shop.key)).toMatchObject({ failed: 0, written: 5 });
  });
});

describe('sink registry and refused events', () => {
  const dirs: string[] = [];
  afterEach(async () => {
    for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
  });

  /** A destination that refuses (422) any write holding one of `bad`, as InfluxDB does a point. */
  class PickyOutput extends RecordingOutput {
    readonly #bad: ReadonlySet<string>;
    constructor(bad: readonly string[]) {
      super('picky');
      this.#bad = new Set(bad);
    }
    override write(events: readonly AuditEvent[]): Promise<void> {
      const refused = events.find((e) => this.#bad.has(e.auditID));
      if (refused === undefined) return super.write(events);
      return Promise.reject(
        new OutputError('REJECTED', `422: field type conflict (${refused.auditID})`, {
          retryable: false,
        }),
      );
    }
  }

  function picky(dir: string | undefined, bad: readonly string[], maxBytes = 1 << 20) {
    const output = new PickyOutput(bad);
    const registry = new SinkRegistry({
      routing: { allowSecretPayloads: false },
      factory: {
        openQueue: () => openQueue({ maxBytes: 10 * 1024 * 1024 }),
        createOutputs: () => Promise.resolve([output]),
        ...(dir === undefined
          ? {}
          : {
              openDeadLetters: (sink: Sink) =>
                new DeadLetterStore({
                  path: deadLetterPath(dir, sink.ref),
                  sink: sink.label,
                  maxBytes,
                }),
            }),
      },
      idleWaitMs: 5,
      backoff: { ...DEFAULT_BACKOFF, initialMs: 5, maxMs: 5, permanentMs: 5 },
    });
    registries.push(registry);
    return { registry, output };
  }

  it('keeps each refused event as a dead letter, counts it by reason, and writes every other one', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'kao-registry-'));
    dirs.push(dir);
    const shop = pipeline('shop', 'orders');
    const events = inNamespace('shop');
    const bad = [events[1]?.auditID, events.at(-1)?.auditID] as string[];
    const { registry, output } = picky(dir, bad);
    await registry.apply([shop]);
    await registry.ingest(events, { kind: 'sink', key: shop.key });
    await eventually(
      'every other shop event written',
      () => output.got.length === events.length - 2,
      2_000,
      5,
    );
    await eventually(
      'both refused events counted',
      () => registry.status(shop.key)?.deadLettered.refused === 2,
      2_000,
      5,
    );
    expect(new Set(output.got.map((e) => e.auditID))).toEqual(
      new Set(events.map((e) => e.auditID).filter((id) => !bad.includes(id))),
    );
    const kept: string[] = [];
    for await (const line of readDeadLetters(deadLetterPath(dir, shop.ref))) {
      if (line.ok) kept.push(`${line.record.event?.auditID} ${line.record.message}`);
    }
    expect(kept).toEqual(bad.map((id) => `${id} 422: field type conflict (${id})`));
    expect(registry.status(shop.key)).toMatchObject({
      written: events.length - 2,
      dropped: { rejected: 0 },
      deadLettered: { refused: 2, unencodable: 0 },
    });
  });

  it('counts refused events it cannot keep as dropped, and still goes on', async () => {
    const shop = pipeline('shop', 'orders');
    const events = inNamespace('shop');
    const { registry, output } = picky(undefined, [events[0]?.auditID as string]);
    await registry.apply([shop]);
    await registry.ingest(events, { kind: 'sink', key: shop.key });
    await eventually(
      'the refused event counted as dropped',
      () => registry.status(shop.key)?.dropped.rejected === 1,
      2_000,
      5,
    );
    await eventually('the others written', () => output.got.length === events.length - 1, 2_000, 5);
    expect(registry.status(shop.key)?.deadLettered).toEqual({ refused: 0, unencodable: 0 });
  });
});
