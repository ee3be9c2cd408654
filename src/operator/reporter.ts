/**
 * This replica's report (ADR 0013): what each of its sinks counted and how its destinations are,
 * written to one ConfigMap slot in the operator's namespace, whichever replica leads. A slot is
 * claimed at start (one the leader has folded, or a new one), written when something changed at
 * most once per interval and at least once per heartbeat, and written one last time, final, on a
 * graceful stop.
 */
import { randomBytes } from 'node:crypto';
import type { SinkRegistry } from '../sinks/registry.ts';
import type { Logger } from '../telemetry/logger.ts';
import type { ResourceState } from './controller.ts';
import { type Clock, every, systemClock } from './clock.ts';
import { type ConfigMapObject, type ConfigMapsApi, type OwnerReference, statusOf } from './kube.ts';
import {
  beyond,
  type Counts,
  countsOf,
  decodeReport,
  decodeTotals,
  EMPTY_TOTALS,
  type ReplicaReport,
  type ReportedDestination,
  type SinkReport,
  slotFolded,
  type StatusTotals,
  ZERO_COUNTS,
} from './reports.ts';

/** The label that ties reports and totals to one installation: its value is the Lease's name. */
export const STATUS_OF_LABEL = 'kube-audit.dev/status-of';
/** `replica` (a slot) or `totals`. */
export const STATUS_PART_LABEL = 'kube-audit.dev/status-part';
/** The data key of a slot's report. */
export const REPORT_KEY = 'report.json';
/** The data key of the totals. */
export const TOTALS_KEY = 'totals.json';

/** The name of slot `index`. */
export function slotName(lease: string, index: number): string {
  return `${lease}-replica-${index}`;
}

/** The name of the totals. */
export function totalsName(lease: string): string {
  return `${lease}-totals`;
}

/** Slots and totals as listed: the totals decoded, the slots left to the caller. */
export interface StatusParts {
  readonly totals: StatusTotals;
  /** The totals' resourceVersion; undefined while there are none. */
  readonly totalsVersion: string | undefined;
  readonly slots: readonly ConfigMapObject[];
}

/** Lists the slots and the totals of an installation. */
export async function listStatusParts(
  api: Pick<ConfigMapsApi, 'listConfigMaps'>,
  namespace: string,
  lease: string,
  log: Logger,
): Promise<StatusParts> {
  const items = await api.listConfigMaps(namespace, `${STATUS_OF_LABEL}=${lease}`);
  const totalsObject = items.find((i) => i.metadata.labels?.[STATUS_PART_LABEL] === 'totals');
  let totals = EMPTY_TOTALS;
  if (totalsObject !== undefined) {
    try {
      totals = decodeTotals(totalsObject.data?.[TOTALS_KEY] ?? '');
    } catch (err) {
      // Treated as none: status then holds its counters until the sums catch up (ADR 0013).
      log.warn({ err, configMap: totalsObject.metadata.name }, 'status totals unreadable');
    }
  }
  return {
    totals,
    totalsVersion: totalsObject?.metadata.resourceVersion,
    slots: items.filter((i) => i.metadata.labels?.[STATUS_PART_LABEL] === 'replica'),
  };
}

/** The ConfigMap of a slot or of the totals. */
export function statusPart(
  namespace: string,
  lease: string,
  name: string,
  part: 'replica' | 'totals',
  json: string,
  resourceVersion?: string,
  owner?: OwnerReference,
): ConfigMapObject {
  return {
    metadata: {
      name,
      namespace,
      labels: { [STATUS_OF_LABEL]: lease, [STATUS_PART_LABEL]: part },
      ...(resourceVersion === undefined ? {} : { resourceVersion }),
      ...(owner === undefined ? {} : { ownerReferences: [owner] }),
    },
    data: { [part === 'replica' ? REPORT_KEY : TOTALS_KEY]: json },
  };
}

/** What the reporter needs. */
export interface ReporterOptions {
  readonly api: ConfigMapsApi;
  readonly namespace: string;
  /** The Lease's name: prefix of the slot names, value of {@link STATUS_OF_LABEL}. */
  readonly lease: string;
  /** This replica's name (the pod's), shown in messages. */
  readonly replica: string;
  readonly states: () => readonly ResourceState[];
  readonly registry: Pick<SinkRegistry, 'status'>;
  /** The process logger; the reporter logs as `module: reporter`. */
  readonly log: Logger;
  /** Writes at most this often. */
  readonly intervalMs: number;
  /** Writes at least this often, changed or not: the leader's proof of life. */
  readonly heartbeatMs: number;
  /** The Lease, once known: the owner of every slot written (they go when it goes). */
  readonly owner?: () => OwnerReference | undefined;
  /** The write timer and the report's times; the system's by default. */
  readonly clock?: Clock;
}

/** Longest destination message in a report: errors can quote whole responses. */
const MESSAGE_LIMIT = 512;

/** How many slots a claim tries before it waits for the next interval. */
const CLAIM_ATTEMPTS = 5;

interface Absolute {
  readonly uid: string;
  readonly counts: Counts;
}

/** Publishes this replica's report. */
export class ReplicaReporter {
  readonly #options: ReporterOptions;
  readonly #log: Logger;
  readonly #clock: Clock;
  #incarnation = newIncarnation();
  // Counters (absolute, as the registry has them) that an earlier incarnation of this process
  // already reported: a new incarnation reports only what exceeds them.
  #baseline = new Map<string, Absolute>();
  // The absolute counters of the last write that may have landed (succeeded, or no answer).
  #landed = new Map<string, Absolute>();
  #slot: { readonly name: string; resourceVersion: string } | undefined;
  #lastSinks: string | undefined;
  #lastWriteAt = Number.NEGATIVE_INFINITY;
  #stopTimer: (() => void) | undefined;
  #running: Promise<void> = Promise.resolve();
  #stopped = false;

  constructor(options: ReporterOptions) {
    this.#options = options;
    this.#log = options.log.child({ module: 'reporter' });
    this.#clock = options.clock ?? systemClock;
  }

  /** The incarnation counting now. */
  get incarnation(): string {
    return this.#incarnation;
  }

  /** The slot this replica writes, once claimed. */
  get slot(): string | undefined {
    return this.#slot?.name;
  }

  /** Publishes every interval (when changed or a heartbeat is due) until stopped. */
  start(): void {
    void this.publish();
    this.#stopTimer = every(this.#clock, this.#options.intervalMs, () => {
      void this.publish();
    });
  }

  /** Stops the timer; {@link publishFinal} still writes. */
  stop(): void {
    this.#stopped = true;
    this.#stopTimer?.();
  }

  /** Publishes now if due; one write at a time. Never rejects. */
  publish(): Promise<void> {
    if (this.#stopped) return this.#running;
    return this.#chain(false);
  }

  /** The last report, marked final: nothing more will be counted. Never rejects. */
  publishFinal(): Promise<void> {
    return this.#chain(true);
  }

  /** The report as it stands now (the leader sums its own from this, not from its slot). */
  current(final = false): ReplicaReport {
    return this.#report(this.#absolute(), final);
  }

  #chain(final: boolean): Promise<void> {
    this.#running = this.#running
      .then(() => this.#publishOnce(final))
      .catch((err: unknown) => {
        this.#log.warn({ err, slot: this.#slot?.name }, 'replica report not published');
      });
    return this.#running;
  }

  async #publishOnce(final: boolean): Promise<void> {
    const absolute = this.#absolute();
    const report = this.#report(absolute, final);
    const sinks = JSON.stringify(report.sinks);
    const now = this.#now().getTime();
    const due =
      final ||
      this.#slot === undefined ||
      sinks !== this.#lastSinks ||
      // Half an interval early: the timer ticks a little less than a heartbeat after the write
      // that set lastWriteAt, and waiting for the tick after would stretch the heartbeat by one.
      now - this.#lastWriteAt >= this.#options.heartbeatMs - this.#options.intervalMs / 2;
    if (!due) return;
    if (this.#slot === undefined) {
      await this.#claim(absolute, final);
      return;
    }
    const { namespace, lease } = this.#options;
    const body = statusPart(
      namespace,
      lease,
      this.#slot.name,
      'replica',
      JSON.stringify(report),
      this.#slot.resourceVersion,
      this.#options.owner?.(),
    );
    try {
      const written = await this.#options.api.replaceConfigMap(body);
      this.#wrote(written, absolute, sinks);
    } catch (err) {
      await this.#failed(err, absolute);
      // The last report must land: in a slot of its own, if this one was lost.
      if (final && this.#slot === undefined) await this.#claim(this.#absolute(), true);
    }
  }

  // A refused write (4xx) did not land; anything else may have.
  async #failed(err: unknown, absolute: Map<string, Absolute>): Promise<void> {
    const status = statusOf(err);
    if (status === undefined || status >= 500) this.#landed = absolute;
    if (status === 409 || status === 404) {
      await this.#recheck();
      return;
    }
    throw err;
  }

  // The slot changed under us: an answer that never came (its resourceVersion is ours), or the
  // leader took this incarnation for gone, folded it, and another replica claimed the slot.
  async #recheck(): Promise<void> {
    const slot = this.#slot;
    if (slot === undefined) return;
    const { api, namespace, lease } = this.#options;
    const log = this.#log;
    const parts = await listStatusParts(api, namespace, lease, log);
    const object = parts.slots.find((s) => s.metadata.name === slot.name);
    const report = object === undefined ? undefined : readReport(object);
    if (report?.incarnation === this.#incarnation) {
      slot.resourceVersion = object?.metadata.resourceVersion ?? '';
      return;
    }
    // Lost: what may have landed was folded; a new incarnation counts only what came after.
    log.warn(
      { slot: slot.name, incarnation: this.#incarnation },
      'replica report slot lost; continuing as a new incarnation',
    );
    this.#baseline = this.#landed;
    this.#incarnation = newIncarnation();
    this.#slot = undefined;
    this.#lastSinks = undefined;
  }

  async #claim(absolute: Map<string, Absolute>, final: boolean): Promise<void> {
    const { api, namespace, lease } = this.#options;
    const log = this.#log;
    const parts = await listStatusParts(api, namespace, lease, log);
    const owner = this.#options.owner?.();
    const built = this.#report(absolute, final);
    const report = JSON.stringify(built);
    const sinks = JSON.stringify(built.sinks);
    const free = parts.slots.filter((s) => {
      const r = readReport(s);
      return r !== undefined && slotFolded(parts.totals, { resourceVersion: rv(s), report: r });
    });
    for (const slot of free.slice(0, CLAIM_ATTEMPTS)) {
      try {
        const name = slot.metadata.name;
        const body = statusPart(namespace, lease, name, 'replica', report, rv(slot), owner);
        this.#wrote(await api.replaceConfigMap(body), absolute, sinks);
        log.info(
          { slot: slot.metadata.name, incarnation: this.#incarnation },
          'report slot claimed',
        );
        return;
      } catch (err) {
        if (statusOf(err) !== 409 && statusOf(err) !== 404) throw err;
      }
    }
    const taken = new Set(parts.slots.map((s) => s.metadata.name));
    let index = 0;
    for (let attempt = 0; attempt < CLAIM_ATTEMPTS; attempt++) {
      while (taken.has(slotName(lease, index))) index++;
      const name = slotName(lease, index);
      try {
        const body = statusPart(namespace, lease, name, 'replica', report, undefined, owner);
        this.#wrote(await api.createConfigMap(body), absolute, sinks);
        log.info({ slot: name, incarnation: this.#incarnation }, 'report slot created');
        return;
      } catch (err) {
        if (statusOf(err) !== 409) throw err;
        taken.add(name);
      }
    }
    throw new Error(`no report slot could be claimed in ${CLAIM_ATTEMPTS} attempts`);
  }

  #wrote(object: ConfigMapObject, absolute: Map<string, Absolute>, sinks: string): void {
    this.#slot = { name: object.metadata.name, resourceVersion: rv(object) };
    this.#landed = absolute;
    this.#lastSinks = sinks;
    this.#lastWriteAt = this.#now().getTime();
  }

  // Every running sink's counters as the registry has them, with the resource's uid.
  #absolute(): Map<string, Absolute> {
    const absolute = new Map<string, Absolute>();
    for (const state of this.#options.states()) {
      const uid = state.object.metadata?.uid;
      if (state.sink === undefined || uid === undefined) continue;
      const snapshot = this.#options.registry.status(state.sink.key);
      if (snapshot === undefined) continue;
      absolute.set(state.sink.key, { uid, counts: countsOf(snapshot) });
    }
    return absolute;
  }

  #report(absolute: Map<string, Absolute>, final: boolean): ReplicaReport {
    const sinks: Record<string, SinkReport> = {};
    for (const [key, { uid, counts }] of absolute) {
      const snapshot = this.#options.registry.status(key);
      if (snapshot === undefined) continue;
      const base = this.#baseline.get(key);
      const destinations: Record<string, ReportedDestination> = {};
      for (const [kind, d] of Object.entries(snapshot.destinations)) {
        if (d === undefined) continue;
        destinations[kind] = {
          ready: d.ready,
          reason: d.reason,
          message: d.message.slice(0, MESSAGE_LIMIT),
          since: d.since.toISOString(),
        };
      }
      sinks[key] = {
        uid,
        counts: beyond(counts, base?.uid === uid ? base.counts : ZERO_COUNTS),
        ...(snapshot.lastEventTime === undefined
          ? {}
          : { lastEventTime: snapshot.lastEventTime.toISOString() }),
        ...(snapshot.lastCaptureInsufficient === undefined
          ? {}
          : { lastCaptureInsufficient: snapshot.lastCaptureInsufficient.toISOString() }),
        destinations,
      };
    }
    return {
      incarnation: this.#incarnation,
      replica: this.#options.replica,
      final,
      publishedAt: this.#now().toISOString(),
      sinks,
    };
  }

  #now(): Date {
    return new Date(this.#clock.now());
  }
}

/** A slot's report, or undefined when it cannot be read (it is then never claimed or summed). */
export function readReport(object: ConfigMapObject): ReplicaReport | undefined {
  try {
    return decodeReport(object.data?.[REPORT_KEY] ?? '');
  } catch {
    return undefined;
  }
}

function rv(object: ConfigMapObject): string {
  return object.metadata.resourceVersion ?? '';
}

function newIncarnation(): string {
  return randomBytes(8).toString('hex');
}
