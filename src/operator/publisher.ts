/**
 * Publishes status (SPEC 2.4) and Events: only while this replica leads, at most once per
 * interval per resource, and only when something changed. Counters and destination health are
 * summed across every replica's report (ADR 0013) and never go backwards. A condition that turns
 * False becomes a Warning Event on the resource; recovery becomes a Normal one.
 */
import { sinkKey } from '../sinks/types.ts';
import type { Logger } from '../telemetry/logger.ts';
import { type Clock, every, systemClock } from './clock.ts';
import type { ResourceState, SinkController } from './controller.ts';
import { type EventsApi, GROUP, type SinkResourcesApi, statusOf, VERSION } from './kube.ts';
import type { ResourceIdentity } from './reports.ts';
import {
  buildStatus,
  changedConditions,
  type Condition,
  neverBackwards,
  type ResourceStatus,
} from './status.ts';
import type { ClusterTally, Tally } from './tally.ts';

/** The reporting component of our Events. */
export const EVENT_COMPONENT = 'kube-audit-operator';

/** What the publisher needs. */
export interface PublisherOptions {
  readonly api: Pick<SinkResourcesApi, 'patchStatus'> & EventsApi;
  readonly controller: Pick<SinkController, 'states' | 'missingSecrets' | 'endpoint'>;
  /** Every replica's counts and destination health. */
  readonly tally: Pick<ClusterTally, 'pass' | 'reset'>;
  /** The process logger; the publisher logs as `module: status`. */
  readonly log: Logger;
  readonly intervalMs: number;
  readonly leading: () => boolean;
  /** The pass timer and condition times; the system's by default. */
  readonly clock?: Clock;
}

/** Writes status and Events for every resource the controller knows. */
export class StatusPublisher {
  readonly #options: PublisherOptions;
  readonly #log: Logger;
  readonly #clock: Clock;
  // What this replica last wrote, per resource key: unchanged status is not written again.
  readonly #written = new Map<
    string,
    { json: string; uid: string | undefined; status: ResourceStatus }
  >();
  #stopTimer: (() => void) | undefined;
  #running: Promise<void> = Promise.resolve();
  #stopped = false;

  constructor(options: PublisherOptions) {
    this.#options = options;
    this.#log = options.log.child({ module: 'status' });
    this.#clock = options.clock ?? systemClock;
  }

  /** Publishes once per interval until stopped. */
  start(): void {
    this.#stopTimer = every(this.#clock, this.#options.intervalMs, () => {
      void this.publish();
    });
  }

  /** Stops publishing; only {@link flush} still writes. */
  stop(): void {
    this.#stopped = true;
    this.#stopTimer?.();
  }

  /** Forgets what was written and which reports were seen when, so a new leader starts afresh. */
  reset(): void {
    this.#written.clear();
    this.#options.tally.reset();
  }

  /** Publishes every resource's status now (if leading and not stopped); one pass at a time. */
  publish(): Promise<void> {
    if (this.#stopped) return this.#running;
    return this.#pass(false);
  }

  /**
   * One last pass, after the queues drained: the final counters, with the conditions as they
   * were (the listeners are closed by now, which is no failure of the sinks). Never rejects.
   */
  flush(): Promise<void> {
    return this.#pass(true);
  }

  #pass(final: boolean): Promise<void> {
    // A failed pass is logged and does not end the chain: the next pass runs regardless.
    this.#running = this.#running
      .then(() => this.#publishAll(final))
      .catch((err: unknown) => {
        this.#log.warn({ err }, 'status pass failed');
      });
    return this.#running;
  }

  async #publishAll(final: boolean): Promise<void> {
    if (!this.#options.leading()) return;
    const states = this.#options.controller.states();
    const resources: ResourceIdentity[] = states.flatMap((s) => {
      const uid = s.object.metadata?.uid;
      return uid === undefined ? [] : [{ key: keyOf(s), uid }];
    });
    const tally = await this.#options.tally.pass(resources);
    const live = new Set<string>();
    for (const state of states) {
      const key = keyOf(state);
      live.add(key);
      try {
        await this.#publishOne(key, state, final, tally);
      } catch (err) {
        // Deleted meanwhile: the next pass no longer sees it.
        if (statusOf(err) !== 404) this.#log.warn({ err, key }, 'status not written');
      }
    }
    for (const key of this.#written.keys()) if (!live.has(key)) this.#written.delete(key);
  }

  async #publishOne(
    key: string,
    state: ResourceState,
    final: boolean,
    tally: Tally,
  ): Promise<void> {
    const { controller } = this.#options;
    const sink = state.sink;
    const uid = state.object.metadata?.uid;
    // What this replica wrote, or else (a new leader) what the resource shows.
    const mine = this.#written.get(key);
    const shown: unknown = mine?.uid === uid ? mine?.status : state.object.status;
    const previous = conditionsOf(shown);
    const built = buildStatus(
      {
        generation: state.generation,
        specProblems: state.problems,
        runningGeneration: state.problems.length > 0 ? sink?.generation : undefined,
        missingSecrets: sink === undefined ? [] : controller.missingSecrets(sink),
        endpoint: sink === undefined ? undefined : controller.endpoint(sink),
        receiverProblem:
          sink?.receiver?.port !== undefined && controller.endpoint(sink) === undefined
            ? `the dedicated listener on port ${sink.receiver.port} is not running (see the operator log)`
            : undefined,
        snapshot:
          sink === undefined || uid === undefined ? undefined : tally.snapshot({ key, uid }),
      },
      previous,
      new Date(this.#clock.now()),
    );
    const held = neverBackwards(built, shown);
    const status = final && previous.length > 0 ? { ...held, conditions: previous } : held;
    const json = JSON.stringify(status);
    if (mine?.uid === uid && mine?.json === json) return;
    const name = state.object.metadata?.name ?? '';
    const namespace = state.object.metadata?.namespace ?? '';
    await this.#options.api.patchStatus(state.kind, namespace, name, status);
    this.#written.set(key, { json, uid, status });
    if (!final) await this.#recordEvents(key, state, previous, status.conditions);
  }

  async #recordEvents(
    key: string,
    state: ResourceState,
    before: readonly Condition[],
    after: readonly Condition[],
  ): Promise<void> {
    const metadata = state.object.metadata ?? {};
    const involved = {
      apiVersion: `${GROUP}/${VERSION}`,
      kind: state.kind,
      name: metadata.name ?? '',
      namespace: state.kind === 'AuditSink' ? '' : (metadata.namespace ?? ''),
      uid: metadata.uid ?? '',
    };
    const now = new Date(this.#clock.now());
    for (const c of changedConditions(before, after)) {
      const wasFalse = before.find((b) => b.type === c.type)?.status === 'False';
      let event: { type: 'Normal' | 'Warning'; reason: string; message: string } | undefined;
      if (c.status === 'False') {
        event = { type: 'Warning', reason: c.reason, message: `${c.type}: ${c.message}` };
      } else if (c.type === 'Ready' && c.status === 'True' && wasFalse) {
        event = { type: 'Normal', reason: 'Ready', message: 'receiving and delivering again' };
      }
      if (event === undefined) continue;
      try {
        await this.#options.api.createEvent({ involved, ...event }, EVENT_COMPONENT, now);
      } catch (err) {
        this.#log.warn({ err, key, reason: event.reason }, 'Event not recorded');
      }
    }
  }
}

function keyOf(state: ResourceState): string {
  const metadata = state.object.metadata ?? {};
  return sinkKey({
    kind: state.kind,
    namespace: state.kind === 'AuditSink' ? '' : (metadata.namespace ?? ''),
    name: metadata.name ?? '',
  });
}

function conditionsOf(status: unknown): readonly Condition[] {
  const conditions = (status as { conditions?: unknown } | undefined)?.conditions;
  return Array.isArray(conditions) ? (conditions as Condition[]) : [];
}
