/**
 * Publishes status (SPEC 2.4) and Events: only while this replica leads, at most once per
 * interval per resource, and only when something changed. Counters and destination health are
 * summed across every replica's report (ADR 0013) and never go backwards. A condition that turns
 * False becomes a Warning Event on the resource; recovery becomes a Normal one.
 */
import { sinkKey } from '../sinks/types.ts';
import type { Logger } from '../telemetry/logger.ts';
import type { ResourceState, SinkController } from './controller.ts';
import { GROUP, type KubeApi, statusOf, VERSION } from './kube.ts';
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
  readonly api: KubeApi;
  readonly controller: SinkController;
  /** Every replica's counts and destination health. */
  readonly tally: Pick<ClusterTally, 'pass' | 'reset'>;
  readonly log: Logger;
  readonly intervalMs: number;
  readonly leading: () => boolean;
  readonly now?: () => Date;
}

/** Writes status and Events for every resource the controller knows. */
export class StatusPublisher {
  readonly #options: PublisherOptions;
  // What this replica last wrote, per resource key: unchanged status is not written again.
  readonly #written = new Map<
    string,
    { json: string; uid: string | undefined; status: ResourceStatus }
  >();
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> = Promise.resolve();
  #stopped = false;

  constructor(options: PublisherOptions) {
    this.#options = options;
  }

  /** Publishes once per interval until stopped. */
  start(): void {
    this.#timer = setInterval(() => {
      void this.publish();
    }, this.#options.intervalMs);
    this.#timer.unref();
  }

  /** Stops publishing; only {@link flush} still writes. */
  stop(): void {
    this.#stopped = true;
    clearInterval(this.#timer);
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
        this.#options.log.warn({ err }, 'status pass failed');
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
        if (statusOf(err) !== 404) this.#options.log.warn({ err, key }, 'status not written');
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
      this.#options.now?.() ?? new Date(),
    );
    const held = neverBackwards(built, shown);
    const status = final && previous.length > 0 ? { ...held, conditions: previous } : held;
    const json = JSON.stringify(status);
    if (mine?.uid === uid && mine?.json === json) return;
    const name = state.object.metadata?.name ?? '';
    const namespace = state.object.metadata?.namespace ?? '';
    await this.#options.api.patchStatus(state.kind, namespace, name, status);
    this.#written.set(key, { json, uid, status });
    if (!final) await this.#recordEvents(state, previous, status.conditions);
  }

  async #recordEvents(
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
    const now = this.#options.now?.() ?? new Date();
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
        this.#options.log.warn({ err, reason: event.reason }, 'Event not recorded');
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
