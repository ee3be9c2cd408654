/**
 * Cluster-wide status from per-replica reports (ADR 0013). Every replica publishes one report: the
 * counters of each of its sinks since it started (its incarnation) and its destinations' health,
 * in a ConfigMap slot of the operator's namespace. The leader sums the reports; when a replica is
 * gone (its report final, or not renewed in time) it moves that incarnation's counts into the
 * persisted totals exactly once. Pure: plain data in, plain data out, the clock an argument.
 */
import type { OutputKind } from '../outputs/types.ts';
import type { DestinationState, SinkStatusSnapshot } from '../sinks/status.ts';

/** The counters that only grow, summed across replicas. */
export const COUNTER_NAMES = [
  'received',
  'policy',
  'namespace',
  'overflow',
  'rejected',
  'deadLetterRefused',
  'deadLetterUnencodable',
  'written',
  'failed',
  'captureInsufficient',
] as const;

/** One counter. */
export type CounterName = (typeof COUNTER_NAMES)[number];

/** One value per counter. */
export type Counts = Readonly<Record<CounterName, number>>;

/** All counters zero. */
export const ZERO_COUNTS: Counts = Object.freeze(
  Object.fromEntries(COUNTER_NAMES.map((n) => [n, 0])) as Record<CounterName, number>,
);

/** A destination's health as a replica reports it (times as RFC 3339). */
export interface ReportedDestination {
  readonly ready: boolean;
  readonly reason: DestinationState['reason'];
  readonly message: string;
  readonly since: string;
}

/** What one replica counted for one sink. */
export interface SinkReport {
  /** The resource's uid: a deleted and re-created resource starts again from zero. */
  readonly uid: string;
  readonly counts: Counts;
  readonly lastEventTime?: string;
  readonly lastCaptureInsufficient?: string;
  readonly destinations: Readonly<Partial<Record<OutputKind, ReportedDestination>>>;
}

/** One incarnation's report: the data of its slot. */
export interface ReplicaReport {
  /** Random per process start (and per slot lost while running): counters restart with it. */
  readonly incarnation: string;
  /** The pod name, for messages. */
  readonly replica: string;
  /** Written once on a graceful stop, after the queues drained: nothing more will be counted. */
  readonly final: boolean;
  /** The replica's clock, for people; liveness is judged by the reader's clock. */
  readonly publishedAt: string;
  /** By sink key (`AuditSink/<name>`, `AuditPipeline/<ns>/<name>`). */
  readonly sinks: Readonly<Record<string, SinkReport>>;
}

/** What the leader folded into the totals for one resource. */
export interface ResourceTotals {
  readonly uid: string;
  /** Everything folded from gone incarnations. */
  readonly base: Counts;
  readonly lastEventTime?: string;
  readonly lastCaptureInsufficient?: string;
  /** The counts folded per incarnation: a slot still showing them adds only what exceeds them. */
  readonly folded: Readonly<Record<string, Counts>>;
}

/** The persisted totals: written by the leader only, compare-and-swap on resourceVersion. */
export interface StatusTotals {
  /** By sink key. */
  readonly resources: Readonly<Record<string, ResourceTotals>>;
  /** Folded incarnations: which slot, at which resourceVersion of it. */
  readonly incarnations: Readonly<
    Record<string, { readonly slot: string; readonly resourceVersion: string }>
  >;
}

/** No totals yet. */
export const EMPTY_TOTALS: StatusTotals = Object.freeze({ resources: {}, incarnations: {} });

/** A slot as the leader read it. */
export interface Slot {
  readonly name: string;
  readonly resourceVersion: string;
  readonly report: ReplicaReport;
  /** When the reader first saw this resourceVersion, by its own clock (ms). */
  readonly observedAt: number;
}

/** A resource the leader writes status for. */
export interface ResourceIdentity {
  readonly key: string;
  readonly uid: string;
}

/** Whether a slot's incarnation still counts as running: not final, and renewed recently enough. */
export function slotLive(slot: Slot, now: number, expiryMs: number): boolean {
  return !slot.report.final && now - slot.observedAt <= expiryMs;
}

/** Whether the totals hold this slot's counts exactly as it shows them now. */
export function slotFolded(totals: StatusTotals, slot: Pick<Slot, 'resourceVersion' | 'report'>) {
  return totals.incarnations[slot.report.incarnation]?.resourceVersion === slot.resourceVersion;
}

/**
 * The totals after folding every gone, unfolded slot, and forgetting what no longer matters:
 * incarnations no slot shows any more, resources that are gone or were re-created. A fold moves
 * counts from a slot into `base` and remembers them as folded, so the sum of base and slots does
 * not change: folding twice, or folding a slot that comes back to life, counts nothing twice.
 */
export function foldTotals(
  totals: StatusTotals,
  slots: readonly Slot[],
  resources: readonly ResourceIdentity[],
  now: number,
  expiryMs: number,
): StatusTotals {
  const uids = new Map(resources.map((r) => [r.key, r.uid]));
  const next: Record<string, ResourceTotals> = {};
  for (const [key, entry] of Object.entries(totals.resources)) {
    if (uids.get(key) === entry.uid) next[key] = entry;
  }
  const incarnations = { ...totals.incarnations };
  for (const slot of slots) {
    if (slotLive(slot, now, expiryMs) || slotFolded(totals, slot)) continue;
    const inc = slot.report.incarnation;
    for (const [key, sink] of Object.entries(slot.report.sinks)) {
      if (uids.get(key) !== sink.uid) continue;
      const entry = next[key] ?? { uid: sink.uid, base: ZERO_COUNTS, folded: {} };
      const before = entry.folded[inc] ?? ZERO_COUNTS;
      next[key] = {
        uid: entry.uid,
        base: add(entry.base, beyond(sink.counts, before)),
        ...latest('lastEventTime', entry.lastEventTime, sink.lastEventTime),
        ...latest(
          'lastCaptureInsufficient',
          entry.lastCaptureInsufficient,
          sink.lastCaptureInsufficient,
        ),
        folded: { ...entry.folded, [inc]: maxCounts(before, sink.counts) },
      };
    }
    incarnations[inc] = { slot: slot.name, resourceVersion: slot.resourceVersion };
  }
  // An incarnation no slot shows any more (its slot was claimed again) can never add anything.
  const shown = new Set(slots.map((s) => s.report.incarnation));
  for (const inc of Object.keys(incarnations)) {
    if (!shown.has(inc)) delete incarnations[inc];
  }
  for (const [key, entry] of Object.entries(next)) {
    const folded = Object.fromEntries(
      Object.entries(entry.folded).filter(([inc]) => incarnations[inc] !== undefined),
    );
    if (Object.keys(folded).length !== Object.keys(entry.folded).length) {
      next[key] = { ...entry, folded };
    }
  }
  return { resources: next, incarnations };
}

/** A destination of a sink across the live replicas. */
export interface ClusterDestination extends DestinationState {
  /** The replicas on which it fails, when it does. */
  readonly failingOn: readonly string[];
}

/** One resource's status summed across replicas. */
export interface ClusterSnapshot extends SinkStatusSnapshot {
  readonly destinations: Readonly<Partial<Record<OutputKind, ClusterDestination>>>;
  /** Live replicas that run the sink. */
  readonly replicas: number;
}

/**
 * A resource's status across the cluster: the folded base plus what every slot shows beyond what
 * was folded from it; destinations from the live slots only (a failure on any of them is the
 * resource's failure). Undefined when no replica runs the sink and nothing was folded.
 */
export function sumResource(
  resource: ResourceIdentity,
  totals: StatusTotals,
  slots: readonly Slot[],
  now: number,
  expiryMs: number,
): ClusterSnapshot | undefined {
  const entry = totals.resources[resource.key];
  const own = entry?.uid === resource.uid ? entry : undefined;
  let counts = own?.base ?? ZERO_COUNTS;
  let lastEventTime = own?.lastEventTime;
  let lastCapture = own?.lastCaptureInsufficient;
  const states = new Map<OutputKind, { replica: string; state: ReportedDestination }[]>();
  let replicas = 0;
  let seen = own !== undefined;
  for (const slot of slots) {
    const sink = slot.report.sinks[resource.key];
    if (sink?.uid !== resource.uid) continue;
    seen = true;
    counts = add(counts, beyond(sink.counts, own?.folded[slot.report.incarnation] ?? ZERO_COUNTS));
    lastEventTime = newest(lastEventTime, sink.lastEventTime);
    lastCapture = newest(lastCapture, sink.lastCaptureInsufficient);
    if (!slotLive(slot, now, expiryMs)) continue;
    replicas++;
    for (const [kind, state] of Object.entries(sink.destinations) as [
      OutputKind,
      ReportedDestination | undefined,
    ][]) {
      if (state === undefined) continue;
      const list = states.get(kind) ?? [];
      list.push({ replica: slot.report.replica, state });
      states.set(kind, list);
    }
  }
  if (!seen) return undefined;
  const destinations: Partial<Record<OutputKind, ClusterDestination>> = {};
  for (const [kind, list] of states) {
    if (list[0] !== undefined) destinations[kind] = mergeDestination(list[0], list);
  }
  return {
    received: counts.received,
    dropped: {
      policy: counts.policy,
      namespace: counts.namespace,
      overflow: counts.overflow,
      rejected: counts.rejected,
    },
    deadLettered: {
      refused: counts.deadLetterRefused,
      unencodable: counts.deadLetterUnencodable,
    },
    written: counts.written,
    failed: counts.failed,
    captureInsufficient: counts.captureInsufficient,
    ...(lastCapture === undefined ? {} : { lastCaptureInsufficient: new Date(lastCapture) }),
    lastEventTime: lastEventTime === undefined ? undefined : new Date(lastEventTime),
    destinations,
    replicas,
  };
}

// Failing anywhere is failing (the first failing replica's error, by name, tells which); else
// delivered anywhere is delivered; else pending.
function mergeDestination(
  first: { replica: string; state: ReportedDestination },
  list: readonly { replica: string; state: ReportedDestination }[],
): ClusterDestination {
  const failing = list.filter((l) => !l.state.ready && l.state.reason !== 'Pending');
  failing.sort((a, b) => a.replica.localeCompare(b.replica));
  const pick = failing[0] ?? list.find((l) => l.state.reason === 'Delivered') ?? first;
  const { ready, reason, message, since } = pick.state;
  return {
    ready,
    reason,
    message,
    since: new Date(since),
    failingOn: failing.map((f) => f.replica),
  };
}

/** The counters of a sink's snapshot. */
export function countsOf(snapshot: SinkStatusSnapshot): Counts {
  return {
    received: snapshot.received,
    policy: snapshot.dropped.policy,
    namespace: snapshot.dropped.namespace,
    overflow: snapshot.dropped.overflow,
    rejected: snapshot.dropped.rejected,
    deadLetterRefused: snapshot.deadLettered.refused,
    deadLetterUnencodable: snapshot.deadLettered.unencodable,
    written: snapshot.written,
    failed: snapshot.failed,
    captureInsufficient: snapshot.captureInsufficient,
  };
}

/** `a + b`, counter by counter. */
export function add(a: Counts, b: Counts): Counts {
  return combine(a, b, (x, y) => x + y);
}

/** What `a` counted beyond `b`, counter by counter, never below zero. */
export function beyond(a: Counts, b: Counts): Counts {
  return combine(a, b, (x, y) => Math.max(0, x - y));
}

/** The larger of each counter. */
export function maxCounts(a: Counts, b: Counts): Counts {
  return combine(a, b, Math.max);
}

function combine(a: Counts, b: Counts, f: (x: number, y: number) => number): Counts {
  return Object.fromEntries(COUNTER_NAMES.map((n) => [n, f(a[n], b[n])])) as Counts;
}

function newest(a: string | undefined, b: string | undefined): string | undefined {
  if (a === undefined) return b;
  if (b === undefined) return a;
  return Date.parse(b) > Date.parse(a) ? b : a;
}

function latest<K extends string>(
  name: K,
  a: string | undefined,
  b: string | undefined,
): Partial<Record<K, string>> {
  const value = newest(a, b);
  return value === undefined ? {} : ({ [name]: value } as Record<K, string>);
}

/** A report or totals object that is not what this operator writes (edited by hand, say). */
export class ReportFormatError extends Error {
  override readonly name = 'ReportFormatError';
  readonly code = 'REPORT_FORMAT';
}

/** Parses a report as stored; throws {@link ReportFormatError} naming what is wrong. */
export function decodeReport(json: string): ReplicaReport {
  const value = parseObject(json, 'report');
  const incarnation = field(value, 'incarnation', 'string', 'report');
  const replica = field(value, 'replica', 'string', 'report');
  const final = field(value, 'final', 'boolean', 'report');
  const publishedAt = field(value, 'publishedAt', 'string', 'report');
  const sinks: Record<string, SinkReport> = {};
  for (const [key, raw] of Object.entries(objectField(value, 'sinks', 'report'))) {
    const where = `report.sinks[${key}]`;
    const sink = asObject(raw, where);
    const destinations: Partial<Record<OutputKind, ReportedDestination>> = {};
    for (const [kind, d] of Object.entries(objectField(sink, 'destinations', where))) {
      const at = `${where}.destinations.${kind}`;
      const state = asObject(d, at);
      destinations[kind as OutputKind] = {
        ready: field(state, 'ready', 'boolean', at),
        reason: field(state, 'reason', 'string', at) as DestinationState['reason'],
        message: field(state, 'message', 'string', at),
        since: field(state, 'since', 'string', at),
      };
    }
    sinks[key] = {
      uid: field(sink, 'uid', 'string', where),
      counts: decodeCounts(sink.counts, `${where}.counts`),
      ...optionalTime(sink, 'lastEventTime', where),
      ...optionalTime(sink, 'lastCaptureInsufficient', where),
      destinations,
    };
  }
  return { incarnation, replica, final, publishedAt, sinks };
}

/** Parses totals as stored; throws {@link ReportFormatError} naming what is wrong. */
export function decodeTotals(json: string): StatusTotals {
  const value = parseObject(json, 'totals');
  const resources: Record<string, ResourceTotals> = {};
  for (const [key, raw] of Object.entries(objectField(value, 'resources', 'totals'))) {
    const where = `totals.resources[${key}]`;
    const entry = asObject(raw, where);
    const folded: Record<string, Counts> = {};
    for (const [inc, c] of Object.entries(objectField(entry, 'folded', where))) {
      folded[inc] = decodeCounts(c, `${where}.folded.${inc}`);
    }
    resources[key] = {
      uid: field(entry, 'uid', 'string', where),
      base: decodeCounts(entry.base, `${where}.base`),
      ...optionalTime(entry, 'lastEventTime', where),
      ...optionalTime(entry, 'lastCaptureInsufficient', where),
      folded,
    };
  }
  const incarnations: Record<string, { slot: string; resourceVersion: string }> = {};
  for (const [inc, raw] of Object.entries(objectField(value, 'incarnations', 'totals'))) {
    const where = `totals.incarnations.${inc}`;
    const entry = asObject(raw, where);
    incarnations[inc] = {
      slot: field(entry, 'slot', 'string', where),
      resourceVersion: field(entry, 'resourceVersion', 'string', where),
    };
  }
  return { resources, incarnations };
}

type Json = Record<string, unknown>;

function parseObject(json: string, what: string): Json {
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch (err) {
    throw new ReportFormatError(`${what}: not JSON: ${(err as Error).message}`, { cause: err });
  }
  return asObject(value, what);
}

function asObject(value: unknown, where: string): Json {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new ReportFormatError(`${where}: must be an object`);
  }
  return value as Json;
}

function objectField(value: Json, name: string, where: string): Json {
  return asObject(value[name], `${where}.${name}`);
}

function field<T extends 'string' | 'boolean'>(
  value: Json,
  name: string,
  type: T,
  where: string,
): T extends 'string' ? string : boolean {
  const v = value[name];
  if (typeof v !== type) throw new ReportFormatError(`${where}.${name}: must be a ${type}`);
  return v as T extends 'string' ? string : boolean;
}

function optionalTime(value: Json, name: string, where: string): Record<string, string> {
  const v = value[name];
  if (v === undefined) return {};
  if (typeof v !== 'string' || Number.isNaN(Date.parse(v))) {
    throw new ReportFormatError(`${where}.${name}: must be an RFC 3339 time`);
  }
  return { [name]: v };
}

function decodeCounts(value: unknown, where: string): Counts {
  const raw = asObject(value, where);
  const counts = {} as Record<CounterName, number>;
  for (const name of COUNTER_NAMES) {
    const v = raw[name] ?? 0;
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
      throw new ReportFormatError(`${where}.${name}: must be a non-negative integer`);
    }
    counts[name] = v;
  }
  return counts;
}
