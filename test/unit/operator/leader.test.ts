// What a replica does with the leader-election Lease as read: create, renew, acquire or follow.
// Pure: starts no process.
import { describe, expect, it } from 'vitest';
import { type Lease, microTime } from '../../../src/operator/kube.ts';
import { LEADER_DEFAULTS, leaseDecision } from '../../../src/operator/leader.ts';

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
