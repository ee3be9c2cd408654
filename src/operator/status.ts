/**
 * The status of an AuditSink or AuditPipeline (SPEC 2.4), built from what the operator knows of
 * the resource and what its sink has done. Pure: the clock is an argument, and a condition keeps
 * its `lastTransitionTime` while its status does not change.
 */
import type { DestinationState, SinkStatusSnapshot } from '../sinks/status.ts';
import type { ClusterDestination, ClusterSnapshot } from './reports.ts';

/** The condition types, in the order `kubectl describe` shows them. */
export const CONDITION_TYPES = [
  'Ready',
  'PolicyValid',
  'ReceiverReady',
  'DestinationReady',
  'CaptureSufficient',
] as const;

/** One condition type. */
export type ConditionType = (typeof CONDITION_TYPES)[number];

/** A status condition, as metav1.Condition. */
export interface Condition {
  readonly type: ConditionType;
  readonly status: 'True' | 'False' | 'Unknown';
  readonly reason: string;
  readonly message: string;
  readonly lastTransitionTime: string;
  readonly observedGeneration: number;
}

/** The status subresource as written. */
export interface ResourceStatus {
  readonly observedGeneration: number;
  readonly conditions: readonly Condition[];
  readonly received: number;
  readonly dropped: Readonly<Record<'policy' | 'namespace' | 'overflow' | 'rejected', number>>;
  readonly deadLettered: Readonly<Record<'refused' | 'unencodable', number>>;
  readonly written: number;
  readonly failed: number;
  readonly lastEventTime?: string;
  readonly endpoint?: string;
}

/** What the operator knows of one resource. */
export interface SinkObservation {
  readonly generation: number;
  /** Every problem of an invalid spec; empty when the spec became a sink. */
  readonly specProblems: readonly string[];
  /**
   * With an invalid spec: the generation whose sink still runs (the last valid one), if any.
   * Receiver and destination conditions then describe that sink.
   */
  readonly runningGeneration?: number | undefined;
  /** Secrets (or keys) the sink references that do not exist, as `namespace/name[key]`. */
  readonly missingSecrets: readonly string[];
  /**
   * The sink's own write tokens (`spec.receiver.tokenSecretRef`) when missing or empty: its
   * endpoint then accepts the receiver-wide credentials only.
   */
  readonly missingCredentials?: readonly string[];
  /** The sink's endpoint URL when it is being served. */
  readonly endpoint: string | undefined;
  /** A dedicated listener asked for but not running, with why. */
  readonly receiverProblem: string | undefined;
  /**
   * The sink's counters and destination states, summed across replicas (ADR 0013) or one
   * replica's own; undefined before the sink started.
   */
  readonly snapshot: ClusterSnapshot | SinkStatusSnapshot | undefined;
}

type Verdict = Pick<Condition, 'status' | 'reason' | 'message'>;

/** Builds the status; conditions whose status is unchanged keep their transition time. */
export function buildStatus(
  observation: SinkObservation,
  previous: readonly Condition[],
  now: Date,
): ResourceStatus {
  const verdicts = conditionVerdicts(observation);
  verdicts.CaptureSufficient = captureVerdict(observation, previous, now);
  const conditions = CONDITION_TYPES.map((type): Condition => {
    const verdict = verdicts[type];
    const before = previous.find((c) => c.type === type);
    return {
      type,
      ...verdict,
      lastTransitionTime:
        before?.status === verdict.status ? before.lastTransitionTime : now.toISOString(),
      observedGeneration: observation.generation,
    };
  });
  const snapshot = observation.snapshot;
  return {
    observedGeneration: observation.generation,
    conditions,
    received: snapshot?.received ?? 0,
    dropped: {
      policy: snapshot?.dropped.policy ?? 0,
      namespace: snapshot?.dropped.namespace ?? 0,
      overflow: snapshot?.dropped.overflow ?? 0,
      rejected: snapshot?.dropped.rejected ?? 0,
    },
    deadLettered: {
      refused: snapshot?.deadLettered.refused ?? 0,
      unencodable: snapshot?.deadLettered.unencodable ?? 0,
    },
    written: snapshot?.written ?? 0,
    failed: snapshot?.failed ?? 0,
    ...(snapshot?.lastEventTime === undefined
      ? {}
      : { lastEventTime: snapshot.lastEventTime.toISOString() }),
    ...(observation.endpoint === undefined ? {} : { endpoint: observation.endpoint }),
  };
}

function conditionVerdicts(o: SinkObservation): Record<ConditionType, Verdict> {
  const invalid = o.specProblems.length > 0;
  // An invalid change with an earlier valid generation still running: that one is served.
  const stillRunning = invalid && o.runningGeneration !== undefined;
  const policy: Verdict = !invalid
    ? { status: 'True', reason: 'Valid', message: 'the spec is valid' }
    : {
        status: 'False',
        reason: 'InvalidSpec',
        message:
          o.specProblems.join('; ') +
          (stillRunning ? `; generation ${o.runningGeneration} keeps running` : ''),
      };
  const receiver: Verdict =
    invalid && !stillRunning
      ? { status: 'False', reason: 'InvalidSpec', message: 'not served: the spec is invalid' }
      : o.receiverProblem !== undefined
        ? { status: 'False', reason: 'ListenerFailed', message: o.receiverProblem }
        : (o.missingCredentials?.length ?? 0) > 0
          ? {
              status: 'False',
              reason: 'SecretNotFound',
              message: `not found: ${(o.missingCredentials ?? []).join(', ')}; until it is, the endpoint accepts the receiver-wide credentials only`,
            }
          : o.endpoint === undefined
            ? { status: 'Unknown', reason: 'Starting', message: 'the endpoint is starting' }
            : { status: 'True', reason: 'Serving', message: `receiving at ${o.endpoint}` };
  const destination = destinationVerdict(o);
  const blocking = [policy, receiver, destination].find((v) => v.status === 'False');
  const ready: Verdict =
    blocking !== undefined
      ? { status: 'False', reason: blocking.reason, message: blocking.message }
      : receiver.status === 'True'
        ? { status: 'True', reason: 'Ready', message: 'receiving and delivering' }
        : { status: 'Unknown', reason: receiver.reason, message: receiver.message };
  return {
    Ready: ready,
    PolicyValid: policy,
    ReceiverReady: receiver,
    DestinationReady: destination,
    // Decided by captureVerdict, which needs the previous condition and the time.
    CaptureSufficient: { status: 'Unknown', reason: 'Pending', message: '' },
  };
}

/**
 * How long an event captured at too low a level keeps CaptureSufficient False: long enough to be
 * seen, and to survive a change of leader (whose own counters start at zero), short enough to
 * clear once the apiserver's policy is fixed.
 */
export const CAPTURE_WINDOW_MS = 10 * 60_000;

function captureVerdict(o: SinkObservation, previous: readonly Condition[], now: Date): Verdict {
  const count = o.snapshot?.captureInsufficient ?? 0;
  const last = o.snapshot?.lastCaptureInsufficient;
  if (count > 0 && (last === undefined || now.getTime() - last.getTime() < CAPTURE_WINDOW_MS)) {
    return {
      status: 'False',
      reason: 'ApiserverCapturesLess',
      message: `${count} events arrived at a lower level than this sink's policy asks for: raise the level of the apiserver's audit policy (see kube-audit-operator apiserver-config)`,
    };
  }
  // Another replica (an earlier leader) saw it: keep its verdict for the rest of the window.
  const before = previous.find((c) => c.type === 'CaptureSufficient');
  if (
    before?.status === 'False' &&
    now.getTime() - new Date(before.lastTransitionTime).getTime() < CAPTURE_WINDOW_MS
  ) {
    return { status: 'False', reason: before.reason, message: before.message };
  }
  return {
    status: 'True',
    reason: 'Sufficient',
    message: 'events arrive with at least the level the policy asks for',
  };
}

function destinationVerdict(o: SinkObservation): Verdict {
  if (o.specProblems.length > 0 && o.runningGeneration === undefined) {
    return { status: 'Unknown', reason: 'InvalidSpec', message: 'the spec is invalid' };
  }
  if (o.missingSecrets.length > 0) {
    return {
      status: 'False',
      reason: 'SecretNotFound',
      message: `not found: ${o.missingSecrets.join(', ')}`,
    };
  }
  const states = Object.entries(o.snapshot?.destinations ?? {}).filter(
    (entry): entry is [string, DestinationState] => entry[1] !== undefined,
  );
  // `Pending` is a destination that has not been written to yet: not a failure.
  const failing = states.filter(([, s]) => !s.ready && s.reason !== 'Pending');
  if (failing.length > 0) {
    const [kind, state] = failing[0] as [string, DestinationState];
    return {
      status: 'False',
      reason: state.reason,
      message: `${kind}: ${state.message}${where(state, o.snapshot)}`,
    };
  }
  if (states.some(([, s]) => s.reason === 'Delivered')) {
    return { status: 'True', reason: 'Delivered', message: 'the last write succeeded' };
  }
  return { status: 'True', reason: 'Pending', message: 'no write has been needed yet' };
}

// Which replicas fail, when the states are summed across replicas.
function where(state: DestinationState, snapshot: SinkObservation['snapshot']): string {
  const failingOn = (state as Partial<ClusterDestination>).failingOn;
  const replicas = (snapshot as Partial<ClusterSnapshot> | undefined)?.replicas;
  if (failingOn === undefined || failingOn.length === 0 || replicas === undefined) return '';
  const names = failingOn.join(', ');
  return ` (on ${failingOn.length} of ${replicas} ${replicas === 1 ? 'replica' : 'replicas'}: ${names})`;
}

/**
 * The status with counters and `lastEventTime` no lower than `shown` (the status as last
 * written): a new leader's sums may lag what the previous one wrote, and status must not go
 * backwards.
 */
export function neverBackwards(status: ResourceStatus, shown: unknown): ResourceStatus {
  if (typeof shown !== 'object' || shown === null) return status;
  const before = shown as Partial<Record<string, unknown>>;
  const num = (v: unknown): number => (typeof v === 'number' && Number.isFinite(v) ? v : 0);
  const dropped = (before.dropped ?? {}) as Partial<Record<string, unknown>>;
  const deadLettered = (before.deadLettered ?? {}) as Partial<Record<string, unknown>>;
  const last = typeof before.lastEventTime === 'string' ? before.lastEventTime : undefined;
  const lastEventTime =
    last !== undefined &&
    (status.lastEventTime === undefined || Date.parse(last) > Date.parse(status.lastEventTime))
      ? last
      : status.lastEventTime;
  return {
    ...status,
    received: Math.max(status.received, num(before.received)),
    dropped: {
      policy: Math.max(status.dropped.policy, num(dropped.policy)),
      namespace: Math.max(status.dropped.namespace, num(dropped.namespace)),
      overflow: Math.max(status.dropped.overflow, num(dropped.overflow)),
      rejected: Math.max(status.dropped.rejected, num(dropped.rejected)),
    },
    deadLettered: {
      refused: Math.max(status.deadLettered.refused, num(deadLettered.refused)),
      unencodable: Math.max(status.deadLettered.unencodable, num(deadLettered.unencodable)),
    },
    written: Math.max(status.written, num(before.written)),
    failed: Math.max(status.failed, num(before.failed)),
    ...(lastEventTime === undefined ? {} : { lastEventTime }),
  };
}

/** Whether two statuses differ in anything but counters and times, i.e. worth an Event. */
export function changedConditions(
  before: readonly Condition[],
  after: readonly Condition[],
): Condition[] {
  return after.filter((c) => {
    const old = before.find((b) => b.type === c.type);
    return old?.status !== c.status || old.reason !== c.reason;
  });
}
