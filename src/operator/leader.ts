/**
 * Leader election on a coordination.k8s.io/v1 Lease, as client-go's leaderelection does it: the
 * holder renews the Lease every retry period; another replica takes it over once it has seen no
 * renewal for the lease duration (by its own clock, so skewed clocks do no harm); every write is a compare-and-swap on resourceVersion, so two
 * replicas never both believe they lead for longer than one renew deadline.
 */
import { type Clock, systemClock } from './clock.ts';
import { type Lease, type LeasesApi, microTime, type OwnerReference, statusOf } from './kube.ts';

/** Timings, client-go's defaults: 15 s lease, renew within 10 s, try every 2 s. */
export const LEADER_DEFAULTS = Object.freeze({
  leaseDurationSeconds: 15,
  renewDeadlineMs: 10_000,
  retryPeriodMs: 2_000,
});

/** How to elect. */
export interface LeaderOptions {
  readonly namespace: string;
  readonly name: string;
  /** This replica's identity: the pod name plus a random suffix, unique per process. */
  readonly identity: string;
  readonly onChange: (leading: boolean) => void;
  readonly onError: (err: unknown) => void;
  readonly leaseDurationSeconds?: number;
  readonly renewDeadlineMs?: number;
  readonly retryPeriodMs?: number;
  /** The retry timer and the local clock that expiry is counted by; the system's by default. */
  readonly clock?: Clock;
}

/**
 * What to do with a Lease as read, given who we are and the time. Pure. Expiry counts from
 * `observedAt`, when this replica saw the holder's current renewal, as client-go does, so that
 * clocks that differ between nodes cannot expire a live Lease; without it, from `renewTime`.
 */
export function leaseDecision(
  lease: Lease | undefined,
  identity: string,
  now: Date,
  leaseDurationSeconds: number,
  observedAt?: Date,
): 'create' | 'renew' | 'acquire' | 'follow' {
  if (lease === undefined) return 'create';
  const spec = lease.spec;
  if (spec.holderIdentity === identity) return 'renew';
  const renewed = spec.renewTime ?? spec.acquireTime;
  const duration = spec.leaseDurationSeconds ?? leaseDurationSeconds;
  const holder = spec.holderIdentity ?? '';
  if (holder === '' || renewed === undefined) return 'acquire';
  const expires = (observedAt ?? new Date(renewed)).getTime() + duration * 1000;
  return now.getTime() > expires ? 'acquire' : 'follow';
}

/** Campaigns for the Lease until stopped; {@link leading} tells whether this replica holds it. */
export class LeaderElector {
  readonly #api: LeasesApi;
  readonly #options: LeaderOptions;
  readonly #clock: Clock;
  #leading = false;
  #lastRenew = 0;
  // The holder's renewal as last seen, and when (local clock).
  #observed: { readonly renewal: string; readonly at: Date } | undefined;
  #timer: unknown;
  #stopped = false;
  #tick: Promise<void> = Promise.resolve();
  #lease: OwnerReference | undefined;

  constructor(api: LeasesApi, options: LeaderOptions) {
    this.#api = api;
    this.#options = options;
    this.#clock = options.clock ?? systemClock;
  }

  /** Whether this replica currently leads. */
  get leading(): boolean {
    return this.#leading;
  }

  /**
   * The Lease as last read or written, as the owner of the replicas' status reports: deleting
   * the Lease (`helm uninstall` does) deletes them. Undefined until the first read.
   */
  get owner(): OwnerReference | undefined {
    return this.#lease;
  }

  /** Starts campaigning: one attempt now, then one per retry period. */
  start(): void {
    const period = this.#options.retryPeriodMs ?? LEADER_DEFAULTS.retryPeriodMs;
    const loop = () => {
      if (this.#stopped) return;
      this.#tick = this.#attempt().finally(() => {
        if (!this.#stopped) this.#timer = this.#clock.setTimeout(loop, period);
      });
    };
    loop();
  }

  /** Resolves once the attempt under way (right after {@link start}: the first) has finished; never rejects. */
  attempted(): Promise<void> {
    return this.#tick;
  }

  /** Stops campaigning and, when leading, releases the Lease so another replica takes over at once. */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#clock.clearTimeout(this.#timer);
    await this.#tick;
    if (!this.#leading) return;
    this.#set(false);
    const { namespace, name } = this.#options;
    try {
      const lease = await this.#api.readLease(namespace, name);
      if (lease?.spec?.holderIdentity !== this.#options.identity) return;
      // As client-go's ReleaseOnCancel: an empty holder and a 1 s duration.
      await this.#api.replaceLease({
        ...lease,
        spec: {
          ...lease.spec,
          holderIdentity: '',
          leaseDurationSeconds: 1,
          renewTime: microTime(this.#now()),
        },
      });
    } catch (err) {
      this.#options.onError(err);
    }
  }

  async #attempt(): Promise<void> {
    const { namespace, name, identity } = this.#options;
    const duration = this.#options.leaseDurationSeconds ?? LEADER_DEFAULTS.leaseDurationSeconds;
    const now = this.#now();
    try {
      const lease = await this.#api.readLease(namespace, name);
      this.#remember(lease);
      const renewal = `${lease?.spec.holderIdentity ?? ''}@${lease?.spec.renewTime ?? ''}`;
      if (this.#observed?.renewal !== renewal) this.#observed = { renewal, at: now };
      const decision = leaseDecision(lease, identity, now, duration, this.#observed.at);
      const spec = {
        holderIdentity: identity,
        leaseDurationSeconds: duration,
        renewTime: microTime(now),
      };
      if (decision === 'create') {
        const created = await this.#api.createLease({
          metadata: { name, namespace },
          spec: { ...spec, acquireTime: microTime(now), leaseTransitions: 0 },
        });
        this.#remember(created);
      } else if (decision === 'renew' && lease !== undefined) {
        await this.#api.replaceLease({ ...lease, spec: { ...lease.spec, ...spec } });
      } else if (decision === 'acquire' && lease !== undefined) {
        await this.#api.replaceLease({
          ...lease,
          spec: {
            ...spec,
            acquireTime: microTime(now),
            leaseTransitions: (lease.spec.leaseTransitions ?? 0) + 1,
          },
        });
      } else {
        this.#set(false);
        return;
      }
      this.#lastRenew = now.getTime();
      this.#set(true);
    } catch (err) {
      // 409: another replica wrote first; it leads. Anything else: keep leading only until the
      // renew deadline, so that a leader cut off from the apiserver steps down in time.
      if (statusOf(err) !== 409) this.#options.onError(err);
      const deadline = this.#options.renewDeadlineMs ?? LEADER_DEFAULTS.renewDeadlineMs;
      if (statusOf(err) === 409 || now.getTime() - this.#lastRenew > deadline) this.#set(false);
    }
  }

  #now(): Date {
    return new Date(this.#clock.now());
  }

  #remember(lease: Lease | undefined): void {
    const uid = lease?.metadata.uid;
    this.#lease =
      lease === undefined || uid === undefined
        ? undefined
        : { apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', name: lease.metadata.name, uid };
  }

  #set(leading: boolean): void {
    if (leading === this.#leading) return;
    this.#leading = leading;
    this.#options.onChange(leading);
  }
}
