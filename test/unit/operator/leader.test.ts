// What a replica does with the leader-election Lease as read (create, renew, acquire or follow),
// and the elector that campaigns with it, on the in-memory fake of the Kubernetes API and a manual
// clock: expiry by the local clock, a conflict on update, the renew deadline, two replicas racing,
// the release on stop. Starts no process and opens no socket.
import { describe, expect, it } from 'vitest';
import { type Lease, microTime } from '../../../src/operator/kube.ts';
import { LEADER_DEFAULTS, LeaderElector, leaseDecision } from '../../../src/operator/leader.ts';
import { FakeKubeApi, serverError, timeout } from '../../support/fake-kube-api.ts';
import { flush, ManualClock } from '../../support/manual-clock.ts';

const US = 'kube-audit-operator-7d9f_1a2b3c4d';
const THEM = 'kube-audit-operator-5c4e_9f8e7d6c';
const NOW = new Date('2026-03-01T10:00:00.000Z');
const DURATION = LEADER_DEFAULTS.leaseDurationSeconds;

/** A MicroTime `seconds` before NOW, as the apiserver returns Lease times. */
function secondsAgo(seconds: number): string {
  return microTime(new Date(NOW.getTime() - seconds * 1000));
}

function lease(spec: Lease['spec']): Lease {
  return { metadata: { name: 'kube-audit-operator', namespace: 'kube-audit' }, spec };
}

describe('leaseDecision', () => {
  it.each<{ name: string; lease: Lease | undefined; decision: string }>([
    { name: 'creates the Lease when there is none', lease: undefined, decision: 'create' },
    {
      name: 'renews a Lease it holds',
      lease: lease({ holderIdentity: US, renewTime: secondsAgo(2), leaseDurationSeconds: 15 }),
      decision: 'renew',
    },
    {
      name: 'renews a Lease it holds even after it expired',
      lease: lease({ holderIdentity: US, renewTime: secondsAgo(600), leaseDurationSeconds: 15 }),
      decision: 'renew',
    },
    {
      name: 'follows another holder that renewed within the lease duration',
      lease: lease({ holderIdentity: THEM, renewTime: secondsAgo(5), leaseDurationSeconds: 15 }),
      decision: 'follow',
    },
    {
      name: 'follows another holder renewed exactly one lease duration ago',
      lease: lease({ holderIdentity: THEM, renewTime: secondsAgo(15), leaseDurationSeconds: 15 }),
      decision: 'follow',
    },
    {
      name: 'acquires a Lease whose holder has not renewed it for longer than its duration',
      lease: lease({ holderIdentity: THEM, renewTime: secondsAgo(16), leaseDurationSeconds: 15 }),
      decision: 'acquire',
    },
    {
      name: 'acquires a released Lease (empty holder)',
      lease: lease({ holderIdentity: '', renewTime: secondsAgo(0), leaseDurationSeconds: 1 }),
      decision: 'acquire',
    },
    {
      name: 'acquires a Lease without a holder',
      lease: lease({ renewTime: secondsAgo(0) }),
      decision: 'acquire',
    },
    {
      name: 'acquires a Lease held by another that was never renewed nor acquired',
      lease: lease({ holderIdentity: THEM }),
      decision: 'acquire',
    },
    {
      name: 'reads the acquire time when the Lease has no renew time',
      lease: lease({ holderIdentity: THEM, acquireTime: secondsAgo(3), leaseDurationSeconds: 15 }),
      decision: 'follow',
    },
    {
      name: "uses the Lease's own duration when it is longer than ours",
      lease: lease({ holderIdentity: THEM, renewTime: secondsAgo(40), leaseDurationSeconds: 60 }),
      decision: 'follow',
    },
    {
      name: "uses the Lease's own duration when it is shorter than ours",
      lease: lease({ holderIdentity: THEM, renewTime: secondsAgo(5), leaseDurationSeconds: 2 }),
      decision: 'acquire',
    },
    {
      name: 'reads microsecond renew times: renewed 14.999877 s ago is still held',
      lease: lease({
        holderIdentity: THEM,
        renewTime: '2026-03-01T09:59:45.000123Z',
        leaseDurationSeconds: 15,
      }),
      decision: 'follow',
    },
    {
      name: 'reads microsecond renew times: renewed 15.001 s ago has expired',
      lease: lease({
        holderIdentity: THEM,
        renewTime: '2026-03-01T09:59:44.999000Z',
        leaseDurationSeconds: 15,
      }),
      decision: 'acquire',
    },
    {
      name: 'uses our duration when the Lease names none',
      lease: lease({ holderIdentity: THEM, renewTime: secondsAgo(DURATION - 1) }),
      decision: 'follow',
    },
    {
      name: 'acquires once our duration has passed when the Lease names none',
      lease: lease({ holderIdentity: THEM, renewTime: secondsAgo(DURATION + 1) }),
      decision: 'acquire',
    },
  ])('$name', ({ lease: read, decision }) => {
    expect(leaseDecision(read, US, NOW, DURATION)).toBe(decision);
  });

  it('counts expiry from when it saw the renewal, not from a renewTime a skewed clock wrote', () => {
    // The holder's clock runs 60 s behind ours: its fresh renewal looks a minute old.
    const skewed = lease({ holderIdentity: THEM, renewTime: secondsAgo(60) });
    expect(leaseDecision(skewed, US, NOW, DURATION, new Date(secondsAgo(1)))).toBe('follow');
    expect(leaseDecision(skewed, US, NOW, DURATION, new Date(secondsAgo(DURATION + 1)))).toBe(
      'acquire',
    );
  });

  it("pins client-go's timings: a 15 s lease, renewed within 10 s, tried every 2 s", () => {
    expect(LEADER_DEFAULTS).toEqual({
      leaseDurationSeconds: 15,
      renewDeadlineMs: 10_000,
      retryPeriodMs: 2_000,
    });
  });
});

describe('LeaderElector', () => {
  const NAMESPACE = 'kube-audit';
  const NAME = 'kube-audit-operator';

  interface Campaign {
    readonly elector: LeaderElector;
    /** Every change of leading, in order. */
    readonly changes: boolean[];
    readonly errors: unknown[];
  }

  function campaign(api: FakeKubeApi, clock: ManualClock, identity: string): Campaign {
    const changes: boolean[] = [];
    const errors: unknown[] = [];
    const elector = new LeaderElector(api, {
      namespace: NAMESPACE,
      name: NAME,
      identity,
      onChange: (leading) => changes.push(leading),
      onError: (err) => errors.push(err),
      clock,
    });
    return { elector, changes, errors };
  }

  function leaseOf(api: FakeKubeApi): Lease['spec'] | undefined {
    return (api.get('Lease', NAMESPACE, NAME) as Lease | undefined)?.spec;
  }

  /** A Lease held by THEM, renewed at `renewTime` by THEM's clock. */
  function heldByThem(api: FakeKubeApi, renewTime: Date, transitions = 3): void {
    api.put('Lease', {
      metadata: { name: NAME, namespace: NAMESPACE },
      spec: {
        holderIdentity: THEM,
        leaseDurationSeconds: 15,
        acquireTime: microTime(renewTime),
        renewTime: microTime(renewTime),
        leaseTransitions: transitions,
      },
    });
  }

  it('creates the Lease when there is none, and leads', async () => {
    const api = new FakeKubeApi();
    const clock = new ManualClock(NOW);
    const us = campaign(api, clock, US);
    us.elector.start();
    await flush();
    expect(us.elector.leading).toBe(true);
    expect(us.changes).toEqual([true]);
    expect(leaseOf(api)).toEqual({
      holderIdentity: US,
      leaseDurationSeconds: 15,
      acquireTime: '2026-03-01T10:00:00.000000Z',
      renewTime: '2026-03-01T10:00:00.000000Z',
      leaseTransitions: 0,
    });
  });

  it('renews every retry period while it leads', async () => {
    const api = new FakeKubeApi();
    const clock = new ManualClock(NOW);
    const us = campaign(api, clock, US);
    us.elector.start();
    await clock.advance(4_000);
    expect(leaseOf(api)).toMatchObject({
      holderIdentity: US,
      acquireTime: '2026-03-01T10:00:00.000000Z',
      renewTime: '2026-03-01T10:00:04.000000Z',
      leaseTransitions: 0,
    });
    expect(api.count('replaceLease')).toBe(2);
    expect(us.changes).toEqual([true]);
  });

  it('takes over a Lease only when it has seen no renewal for the lease duration, by its own clock', async () => {
    const api = new FakeKubeApi();
    const clock = new ManualClock(NOW);
    // The holder's clock is an hour behind: by renewTime alone its Lease long expired.
    heldByThem(api, new Date(NOW.getTime() - 3_600_000));
    const us = campaign(api, clock, US);
    us.elector.start();
    await clock.advance(9_000);
    expect(us.elector.leading).toBe(false);
    // The holder renews (its clock still an hour behind): the duration counts again from when
    // this replica sees it, at its attempt at 10 s.
    heldByThem(api, new Date(NOW.getTime() - 3_600_000 + 9_000));
    await clock.advance(16_000);
    expect(us.elector.leading).toBe(false);
    // Attempts run every 2 s: the first after 15 s without a renewal takes the Lease.
    await clock.advance(2_000);
    expect(us.elector.leading).toBe(true);
    expect(leaseOf(api)).toMatchObject({
      holderIdentity: US,
      acquireTime: '2026-03-01T10:00:26.000000Z',
      leaseTransitions: 4,
    });
    expect(us.errors).toEqual([]);
  });

  it('steps down at once, without an error, when another replica wrote the Lease first', async () => {
    const api = new FakeKubeApi();
    const clock = new ManualClock(NOW);
    const us = campaign(api, clock, US);
    us.elector.start();
    await flush();
    // Our renewal waits while THEM takes the Lease: our write carries a stale resourceVersion.
    const renewal = api.hold('replaceLease');
    const attempt = clock.advance(2_000);
    await renewal.arrived();
    heldByThem(api, clock.date());
    renewal.release();
    await attempt;
    expect(us.elector.leading).toBe(false);
    expect(us.changes).toEqual([true, false]);
    expect(us.errors).toEqual([]);
    expect(leaseOf(api)?.holderIdentity).toBe(THEM);
    // THEM's Lease is fresh: we follow.
    await clock.advance(10_000);
    expect(us.elector.leading).toBe(false);
  });

  it('keeps leading through failed renewals until the renew deadline, then steps down', async () => {
    const api = new FakeKubeApi();
    const clock = new ManualClock(NOW);
    const us = campaign(api, clock, US);
    us.elector.start();
    await flush();
    api.failNext('replaceLease', serverError(), 5);
    api.failNext('readLease', timeout('read Lease'), 1);
    const leading: boolean[] = [];
    for (let t = 2; t <= 12; t += 2) {
      await clock.advance(2_000);
      leading.push(us.elector.leading);
    }
    // Renewed at 0 s; failures at 2 to 10 s are within the 10 s renew deadline, at 12 s it is past.
    expect(leading).toEqual([true, true, true, true, true, false]);
    expect(us.errors).toHaveLength(6);
    expect(us.changes).toEqual([true, false]);
  });

  it('lets exactly one of two replicas lead when both find no Lease', async () => {
    const api = new FakeKubeApi();
    const clock = new ManualClock(NOW);
    const us = campaign(api, clock, US);
    const them = campaign(api, clock, THEM);
    us.elector.start();
    them.elector.start();
    await flush();
    expect(api.count('createLease')).toBe(2);
    expect([us.elector.leading, them.elector.leading].sort()).toEqual([false, true]);
    await clock.advance(20_000);
    expect([us.elector.leading, them.elector.leading].sort()).toEqual([false, true]);
    expect([...us.errors, ...them.errors]).toEqual([]);
  });

  it('releases the Lease on stop, so that another replica takes over at its next attempt', async () => {
    const api = new FakeKubeApi();
    const clock = new ManualClock(NOW);
    const us = campaign(api, clock, US);
    us.elector.start();
    await flush();
    const them = campaign(api, clock, THEM);
    them.elector.start();
    await clock.advance(1_000);
    expect(them.elector.leading).toBe(false);
    await us.elector.stop();
    expect(us.changes).toEqual([true, false]);
    // As client-go's ReleaseOnCancel: no holder, a 1 s duration.
    expect(leaseOf(api)).toMatchObject({ holderIdentity: '', leaseDurationSeconds: 1 });
    await clock.advance(1_000);
    expect(them.elector.leading).toBe(true);
    expect(leaseOf(api)).toMatchObject({ holderIdentity: THEM, leaseTransitions: 1 });
    // Stopped: no attempt of ours is scheduled, only THEM's next one.
    expect(clock.pending()).toEqual([2_000]);
    expect(us.elector.leading).toBe(false);
  });

  it('releases nothing on stop when it follows, or when another replica holds the Lease by then', async () => {
    const api = new FakeKubeApi();
    const clock = new ManualClock(NOW);
    heldByThem(api, NOW);
    const follower = campaign(api, clock, US);
    follower.elector.start();
    await flush();
    await follower.elector.stop();
    expect(api.count('replaceLease')).toBe(0);

    const api2 = new FakeKubeApi();
    const leader = campaign(api2, clock, US);
    leader.elector.start();
    await flush();
    heldByThem(api2, clock.date());
    await leader.elector.stop();
    expect(leaseOf(api2)?.holderIdentity).toBe(THEM);
    expect(leader.changes).toEqual([true, false]);
  });

  it('names the Lease it read, by uid, as the owner of the status reports; a new Lease by its new uid', async () => {
    const api = new FakeKubeApi();
    const clock = new ManualClock(NOW);
    const us = campaign(api, clock, US);
    expect(us.elector.owner).toBeUndefined();
    // As the chart creates it: no holder yet.
    const first = api.put('Lease', { metadata: { name: NAME, namespace: NAMESPACE }, spec: {} });
    us.elector.start();
    await flush();
    expect(us.elector.leading).toBe(true);
    expect(us.elector.owner).toEqual({
      apiVersion: 'coordination.k8s.io/v1',
      kind: 'Lease',
      name: NAME,
      uid: first.metadata.uid,
    });
    // Uninstalled and installed again: another object of the same name.
    api.remove('Lease', NAMESPACE, NAME);
    const second = api.put('Lease', { metadata: { name: NAME, namespace: NAMESPACE }, spec: {} });
    await clock.advance(LEADER_DEFAULTS.retryPeriodMs);
    expect(second.metadata.uid).not.toBe(first.metadata.uid);
    expect(us.elector.owner?.uid).toBe(second.metadata.uid);
    await us.elector.stop();
  });

  it('names the Lease it created as the owner when there was none, by the end of its first attempt', async () => {
    const api = new FakeKubeApi();
    const clock = new ManualClock(NOW);
    const us = campaign(api, clock, US);
    us.elector.start();
    await us.elector.attempted();
    expect(us.elector.owner?.uid).toBe(api.get('Lease', NAMESPACE, NAME)?.metadata.uid);
    await us.elector.stop();
  });

  it('reports a release that failed; the Lease then expires by itself', async () => {
    const api = new FakeKubeApi();
    const clock = new ManualClock(NOW);
    const us = campaign(api, clock, US);
    us.elector.start();
    await flush();
    api.forbid('replaceLease');
    await us.elector.stop();
    expect(us.elector.leading).toBe(false);
    expect(us.errors).toMatchObject([{ status: 403, reason: 'Forbidden' }]);
    expect(leaseOf(api)?.holderIdentity).toBe(US);
  });
});
