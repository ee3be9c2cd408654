/**
 * What a sink has done and how its destinations are, as SPEC 2.4 reports it: counters, the last
 * event time and one condition per destination. Kept in memory; the operator's leader publishes it.
 */
import type { OutputErrorCode, OutputKind } from '../outputs/types.ts';
import type { DeadLetterReason } from './dead-letter.ts';
import type { DropReason } from './router.ts';

/**
 * Why a sink dropped events: the router's reasons, a full queue, and events its destination
 * refused (400/422) that could not be kept as dead letters.
 */
export type DroppedReason = DropReason | 'overflow' | 'rejected';

/** The state of one destination of a sink. */
export interface DestinationState {
  readonly ready: boolean;
  /** A stable reason: `Delivered`, `Pending`, or the last error's code. */
  readonly reason: 'Delivered' | 'Pending' | OutputErrorCode;
  readonly message: string;
  readonly since: Date;
}

/** A point-in-time copy of a sink's status. */
export interface SinkStatusSnapshot {
  readonly received: number;
  readonly dropped: Readonly<Record<DroppedReason, number>>;
  /** Events kept in the sink's dead-letter store, by reason. */
  readonly deadLettered: Readonly<Record<DeadLetterReason, number>>;
  readonly written: number;
  readonly failed: number;
  /** Events whose sink policy asked for more than the apiserver captured. */
  readonly captureInsufficient: number;
  /** When the last of them arrived. */
  readonly lastCaptureInsufficient?: Date;
  readonly lastEventTime: Date | undefined;
  readonly destinations: Readonly<Partial<Record<OutputKind, DestinationState>>>;
}

/** The live, mutable status of one sink. */
export class SinkStatus {
  received = 0;
  readonly dropped: Record<DroppedReason, number> = {
    policy: 0,
    namespace: 0,
    overflow: 0,
    rejected: 0,
  };
  readonly deadLettered: Record<DeadLetterReason, number> = { refused: 0, unencodable: 0 };
  written = 0;
  failed = 0;
  captureInsufficient = 0;
  lastCaptureInsufficient: Date | undefined;
  lastEventTime: Date | undefined;
  readonly #destinations: Partial<Record<OutputKind, DestinationState>> = {};
  readonly #now: () => Date;

  constructor(now: () => Date = () => new Date()) {
    this.#now = now;
  }

  /** Records a destination's state, keeping `since` while the state does not change. */
  setDestination(
    kind: OutputKind,
    ready: boolean,
    reason: DestinationState['reason'],
    message: string,
  ): void {
    const previous = this.#destinations[kind];
    const since =
      previous?.ready === ready && previous.reason === reason ? previous.since : this.#now();
    this.#destinations[kind] = { ready, reason, message, since };
  }

  /** Counts an event captured at a lower level than the sink's policy asks for. */
  noteCaptureInsufficient(): void {
    this.captureInsufficient++;
    this.lastCaptureInsufficient = this.#now();
  }

  /** A copy safe to hand to other modules. */
  snapshot(): SinkStatusSnapshot {
    return {
      received: this.received,
      dropped: { ...this.dropped },
      deadLettered: { ...this.deadLettered },
      written: this.written,
      failed: this.failed,
      captureInsufficient: this.captureInsufficient,
      ...(this.lastCaptureInsufficient === undefined
        ? {}
        : { lastCaptureInsufficient: this.lastCaptureInsufficient }),
      lastEventTime: this.lastEventTime,
      destinations: { ...this.#destinations },
    };
  }
}
