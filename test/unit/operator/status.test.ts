// The status of an AuditSink or AuditPipeline built from what the operator observed: conditions,
// transition times, counters. Pure: starts no process.
import { describe, expect, it } from 'vitest';
import {
  buildStatus,
  CAPTURE_WINDOW_MS,
  changedConditions,
  type Condition,
  CONDITION_TYPES,
  type ConditionType,
  type SinkObservation,
} from '../../../src/operator/status.ts';
import type { DestinationState, SinkStatusSnapshot } from '../../../src/sinks/status.ts';

const ENDPOINT = 'https://10.96.0.50/audit/v1/pipelines/shop/orders';
const EARLIER = new Date('2026-03-01T09:00:00.000Z');
const NOW = new Date('2026-03-01T10:00:00.000Z');
const LATER = new Date('2026-03-01T11:00:00.000Z');

function destination(
  reason: DestinationState['reason'],
  message = '',
  ready = reason === 'Delivered',
): DestinationState {
  return { ready, reason, message, since: EARLIER };
}

function snapshot(overrides: Partial<SinkStatusSnapshot> = {}): SinkStatusSnapshot {
  return {
    received: 0,
    dropped: { policy: 0, namespace: 0, overflow: 0, rejected: 0 },
    deadLettered: { refused: 0, unencodable: 0 },
    written: 0,
    failed: 0,
    captureInsufficient: 0,
    lastEventTime: undefined,
    destinations: {},
    ...overrides,
  };
}

/** A valid sink, served and delivering, unless the overrides say otherwise. */
function observation(overrides: Partial<SinkObservation> = {}): SinkObservation {
  return {
    generation: 3,
    specProblems: [],
    missingSecrets: [],
    endpoint: ENDPOINT,
    receiverProblem: undefined,
    snapshot: snapshot({ destinations: { influxdb: destination('Delivered', 'written') } }),
    ...overrides,
  };
}

type Expected = Partial<Record<ConditionType, Partial<Pick<Condition, 'status' | 'reason'>>>>;

function conditionOf(conditions: readonly Condition[], type: ConditionType): Condition {
  const condition = conditions.find((c) => c.type === type);
  if (condition === undefined) throw new Error(`no ${type} condition`);
  return condition;
}

describe('conditions', () => {
  const cases: { name: string; observation: SinkObservation; expected: Expected }[] = [
    {
      name: 'a valid spec, served and delivered, is Ready',
      observation: observation(),
      expected: {
        Ready: { status: 'True', reason: 'Ready' },
        PolicyValid: { status: 'True', reason: 'Valid' },
        ReceiverReady: { status: 'True', reason: 'Serving' },
        DestinationReady: { status: 'True', reason: 'Delivered' },
        CaptureSufficient: { status: 'True', reason: 'Sufficient' },
      },
    },
    {
      name: 'an invalid spec is not PolicyValid and not Ready',
      observation: observation({
        specProblems: ['spec.influxdb.bucket: Required value', 'spec.policy.rules: Required value'],
        endpoint: undefined,
        snapshot: undefined,
      }),
      expected: {
        Ready: { status: 'False', reason: 'InvalidSpec' },
        PolicyValid: { status: 'False', reason: 'InvalidSpec' },
        ReceiverReady: { status: 'False', reason: 'InvalidSpec' },
        DestinationReady: { status: 'Unknown', reason: 'InvalidSpec' },
      },
    },
    {
      name: 'a missing Secret makes the destination not ready, and the sink not Ready',
      observation: observation({
        missingSecrets: ['shop/influx-token[token]'],
        snapshot: snapshot(),
      }),
      expected: {
        Ready: { status: 'False', reason: 'SecretNotFound' },
        PolicyValid: { status: 'True', reason: 'Valid' },
        ReceiverReady: { status: 'True', reason: 'Serving' },
        DestinationReady: { status: 'False', reason: 'SecretNotFound' },
      },
    },
    {
      name: 'missing write tokens make the receiver not ready (its own clients are refused), and leave the destination alone',
      observation: observation({
        missingCredentials: [
          'Secret shop/audit-writers labelled kube-audit.dev/usable-by-sinks=true',
        ],
      }),
      expected: {
        Ready: { status: 'False', reason: 'SecretNotFound' },
        ReceiverReady: { status: 'False', reason: 'SecretNotFound' },
        DestinationReady: { status: 'True', reason: 'Delivered' },
      },
    },
    {
      name: 'a destination refusing the token is not ready, with its error code as the reason',
      observation: observation({
        snapshot: snapshot({
          destinations: { influxdb: destination('UNAUTHORIZED', '401 unauthorized access') },
        }),
      }),
      expected: {
        Ready: { status: 'False', reason: 'UNAUTHORIZED' },
        DestinationReady: { status: 'False', reason: 'UNAUTHORIZED' },
      },
    },
    {
      name: 'a destination not yet written to is pending, not failing',
      observation: observation({
        snapshot: snapshot({ destinations: { influxdb: destination('Pending', 'no write yet') } }),
      }),
      expected: {
        Ready: { status: 'True', reason: 'Ready' },
        DestinationReady: { status: 'True', reason: 'Pending' },
      },
    },
    {
      name: 'a sink not started yet is pending, not failing',
      observation: observation({ snapshot: undefined }),
      expected: {
        Ready: { status: 'True', reason: 'Ready' },
        DestinationReady: { status: 'True', reason: 'Pending' },
        CaptureSufficient: { status: 'True', reason: 'Sufficient' },
      },
    },
    {
      name: 'one failing destination fails the sink though another delivers',
      observation: observation({
        snapshot: snapshot({
          destinations: {
            influxdb: destination('Delivered', 'written'),
            webhook: destination('UNREACHABLE', 'connect ECONNREFUSED'),
          },
        }),
      }),
      expected: {
        Ready: { status: 'False', reason: 'UNREACHABLE' },
        DestinationReady: { status: 'False', reason: 'UNREACHABLE' },
      },
    },
    {
      name: 'events captured at a lower level than asked are reported, without affecting Ready',
      observation: observation({
        snapshot: snapshot({
          captureInsufficient: 7,
          destinations: { influxdb: destination('Delivered', 'written') },
        }),
      }),
      expected: {
        Ready: { status: 'True', reason: 'Ready' },
        CaptureSufficient: { status: 'False', reason: 'ApiserverCapturesLess' },
      },
    },
    {
      name: 'a dedicated listener that failed makes the receiver not ready, and the sink not Ready',
      observation: observation({
        receiverProblem: 'listen EADDRINUSE: address already in use 0.0.0.0:9443',
      }),
      expected: {
        Ready: { status: 'False', reason: 'ListenerFailed' },
        ReceiverReady: { status: 'False', reason: 'ListenerFailed' },
      },
    },
    {
      name: 'an endpoint not known yet is starting: neither Ready nor failed',
      observation: observation({ endpoint: undefined }),
      expected: {
        Ready: { status: 'Unknown', reason: 'Starting' },
        ReceiverReady: { status: 'Unknown', reason: 'Starting' },
      },
    },
  ];

  it.each(cases)('$name', ({ observation: o, expected }) => {
    const { conditions } = buildStatus(o, [], NOW);
    for (const [type, want] of Object.entries(expected)) {
      expect(conditionOf(conditions, type as ConditionType), type).toMatchObject(want);
    }
  });

  it('reports every condition type once, in the documented order', () => {
    for (const { observation: o } of cases) {
      expect(buildStatus(o, [], NOW).conditions.map((c) => c.type)).toEqual([...CONDITION_TYPES]);
    }
  });

  it('names every problem of an invalid spec in the PolicyValid and Ready messages', () => {
    const problems = [
      'spec.influxdb.bucket: Required value',
      'spec.policy.rules[0].level: Unsupported value: "Everything"',
    ];
    const { conditions } = buildStatus(observation({ specProblems: problems }), [], NOW);
    for (const type of ['PolicyValid', 'Ready'] as const) {
      const message = conditionOf(conditions, type).message;
      for (const problem of problems) expect(message).toContain(problem);
    }
  });

  it('names the missing Secret and key', () => {
    const { conditions } = buildStatus(
      observation({ missingSecrets: ['shop/influx-token[token]'] }),
      [],
      NOW,
    );
    expect(conditionOf(conditions, 'DestinationReady').message).toContain(
      'shop/influx-token[token]',
    );
    expect(conditionOf(conditions, 'Ready').message).toContain('shop/influx-token[token]');
  });

  it('names the missing token Secret, and says the receiver-wide credentials still work', () => {
    const { conditions } = buildStatus(
      observation({ missingCredentials: ['key tokens of Secret shop/audit-writers'] }),
      [],
      NOW,
    );
    expect(conditionOf(conditions, 'ReceiverReady').message).toBe(
      'not found: key tokens of Secret shop/audit-writers; until it is, the endpoint accepts the receiver-wide credentials only',
    );
  });

  it("names the failing destination and its error's message", () => {
    const { conditions } = buildStatus(
      observation({
        snapshot: snapshot({
          destinations: { influxdb: destination('UNAUTHORIZED', '401 unauthorized access') },
        }),
      }),
      [],
      NOW,
    );
    expect(conditionOf(conditions, 'DestinationReady').message).toBe(
      'influxdb: 401 unauthorized access',
    );
  });

  it('names the replicas a destination fails on, and of how many, when summed across replicas', () => {
    const failing = {
      ...destination('UNAUTHORIZED', '401 unauthorized access'),
      failingOn: ['kao-7d9f-q8'],
    };
    const { conditions } = buildStatus(
      observation({
        snapshot: { ...snapshot({ destinations: { influxdb: failing } }), replicas: 2 },
      }),
      [],
      NOW,
    );
    expect(conditionOf(conditions, 'DestinationReady')).toMatchObject({
      status: 'False',
      reason: 'UNAUTHORIZED',
      message: 'influxdb: 401 unauthorized access (on 1 of 2 replicas: kao-7d9f-q8)',
    });
    expect(conditionOf(conditions, 'Ready').status).toBe('False');
  });

  it('says how many events arrived at too low a level, and what to do about it', () => {
    const { conditions } = buildStatus(
      observation({ snapshot: snapshot({ captureInsufficient: 7 }) }),
      [],
      NOW,
    );
    const message = conditionOf(conditions, 'CaptureSufficient').message;
    expect(message).toMatch(/^7 events/);
    expect(message).toContain('apiserver-config');
  });

  it('clears CaptureSufficient once no event arrived at too low a level for the window', () => {
    const at = (msAgo: number) => new Date(NOW.getTime() - msAgo);
    const verdict = (msAgo: number) =>
      conditionOf(
        buildStatus(
          observation({
            snapshot: snapshot({ captureInsufficient: 2, lastCaptureInsufficient: at(msAgo) }),
          }),
          [],
          NOW,
        ).conditions,
        'CaptureSufficient',
      ).status;
    expect(verdict(CAPTURE_WINDOW_MS - 1)).toBe('False');
    expect(verdict(CAPTURE_WINDOW_MS + 1)).toBe('True');
  });

  it("keeps an earlier leader's CaptureSufficient=False for the rest of the window", () => {
    const earlier = (msAgo: number) =>
      buildStatus(
        observation({ snapshot: snapshot({ captureInsufficient: 3 }) }),
        [],
        new Date(NOW.getTime() - msAgo),
      ).conditions;
    const fresh = observation();
    const recent = buildStatus(fresh, earlier(60_000), NOW).conditions;
    expect(conditionOf(recent, 'CaptureSufficient')).toMatchObject({
      status: 'False',
      reason: 'ApiserverCapturesLess',
    });
    const old = buildStatus(fresh, earlier(CAPTURE_WINDOW_MS + 1), NOW).conditions;
    expect(conditionOf(old, 'CaptureSufficient').status).toBe('True');
  });

  it('describes the last valid generation while an invalid change is refused', () => {
    const { conditions } = buildStatus(
      observation({ specProblems: ['spec.influxdb.url: Invalid value'], runningGeneration: 2 }),
      [],
      NOW,
    );
    expect(conditionOf(conditions, 'PolicyValid')).toMatchObject({
      status: 'False',
      message: 'spec.influxdb.url: Invalid value; generation 2 keeps running',
    });
    expect(conditionOf(conditions, 'ReceiverReady').status).toBe('True');
    expect(conditionOf(conditions, 'DestinationReady').status).toBe('True');
    expect(conditionOf(conditions, 'Ready')).toMatchObject({
      status: 'False',
      reason: 'InvalidSpec',
    });
  });

  it('carries the listener problem as the ReceiverReady message', () => {
    const problem = 'listen EADDRINUSE: address already in use 0.0.0.0:9443';
    const { conditions } = buildStatus(observation({ receiverProblem: problem }), [], NOW);
    expect(conditionOf(conditions, 'ReceiverReady').message).toBe(problem);
  });

  it('gives the resource generation as every condition’s observedGeneration', () => {
    const status = buildStatus(observation({ generation: 12 }), [], NOW);
    expect(status.observedGeneration).toBe(12);
    expect(status.conditions.map((c) => c.observedGeneration)).toEqual(
      CONDITION_TYPES.map(() => 12),
    );
  });
});

describe('lastTransitionTime', () => {
  it('is now for a condition seen for the first time', () => {
    const { conditions } = buildStatus(observation(), [], NOW);
    for (const c of conditions) expect(c.lastTransitionTime).toBe(NOW.toISOString());
  });

  it('is kept while a condition’s status does not change', () => {
    const first = buildStatus(observation(), [], NOW);
    const second = buildStatus(observation({ generation: 4 }), first.conditions, LATER);
    for (const c of second.conditions) expect(c.lastTransitionTime).toBe(NOW.toISOString());
  });

  it('is kept when only the reason changes, as the status did not transition', () => {
    const pending = observation({
      snapshot: snapshot({ destinations: { influxdb: destination('Pending') } }),
    });
    const first = buildStatus(pending, [], NOW);
    const second = buildStatus(observation(), first.conditions, LATER);
    const destinationReady = conditionOf(second.conditions, 'DestinationReady');
    expect(destinationReady.reason).toBe('Delivered');
    expect(destinationReady.lastTransitionTime).toBe(NOW.toISOString());
  });

  it('is set to now for exactly the conditions whose status changed', () => {
    const first = buildStatus(observation(), [], NOW);
    const failing = observation({
      snapshot: snapshot({ destinations: { influxdb: destination('UNAUTHORIZED', '401') } }),
    });
    const second = buildStatus(failing, first.conditions, LATER);
    const times = Object.fromEntries(second.conditions.map((c) => [c.type, c.lastTransitionTime]));
    expect(times).toEqual({
      Ready: LATER.toISOString(),
      PolicyValid: NOW.toISOString(),
      ReceiverReady: NOW.toISOString(),
      DestinationReady: LATER.toISOString(),
      CaptureSufficient: NOW.toISOString(),
    });
  });
});

describe('counters and optional fields', () => {
  it('copies the counters of the sink', () => {
    const status = buildStatus(
      observation({
        snapshot: snapshot({
          received: 120,
          dropped: { policy: 40, namespace: 30, overflow: 2, rejected: 1 },
          written: 45,
          failed: 2,
        }),
      }),
      [],
      NOW,
    );
    expect(status).toMatchObject({
      received: 120,
      dropped: { policy: 40, namespace: 30, overflow: 2, rejected: 1 },
      written: 45,
      failed: 2,
    });
  });

  it('reports zero counters before the sink has started', () => {
    const status = buildStatus(observation({ snapshot: undefined }), [], NOW);
    expect(status).toMatchObject({
      received: 0,
      dropped: { policy: 0, namespace: 0, overflow: 0, rejected: 0 },
      written: 0,
      failed: 0,
    });
  });

  it('gives the endpoint and the last event time when they are known', () => {
    const last = new Date('2026-03-01T09:59:58.123Z');
    const status = buildStatus(
      observation({ snapshot: snapshot({ lastEventTime: last }) }),
      [],
      NOW,
    );
    expect(status.endpoint).toBe(ENDPOINT);
    expect(status.lastEventTime).toBe('2026-03-01T09:59:58.123Z');
  });

  it('leaves out the endpoint and the last event time when they are not known', () => {
    const status = buildStatus(observation({ endpoint: undefined, snapshot: snapshot() }), [], NOW);
    expect('endpoint' in status).toBe(false);
    expect('lastEventTime' in status).toBe(false);
  });
});

describe('changedConditions', () => {
  it('reports every condition when there was none before', () => {
    const { conditions } = buildStatus(observation(), [], NOW);
    expect(changedConditions([], conditions).map((c) => c.type)).toEqual([...CONDITION_TYPES]);
  });

  it('reports nothing when only counters, messages and times changed', () => {
    const before = buildStatus(observation(), [], NOW).conditions;
    const after = buildStatus(
      observation({
        generation: 4,
        snapshot: snapshot({
          received: 99,
          destinations: { influxdb: destination('Delivered', 'another message') },
        }),
      }),
      before,
      LATER,
    ).conditions;
    expect(changedConditions(before, after)).toEqual([]);
  });

  it('reports conditions whose status or reason changed', () => {
    const before = buildStatus(
      observation({ snapshot: snapshot({ destinations: { influxdb: destination('Pending') } }) }),
      [],
      NOW,
    ).conditions;
    const delivered = buildStatus(observation(), before, LATER).conditions;
    expect(changedConditions(before, delivered).map((c) => c.type)).toEqual(['DestinationReady']);
    const failing = buildStatus(
      observation({
        snapshot: snapshot({ destinations: { influxdb: destination('UNAUTHORIZED', '401') } }),
      }),
      delivered,
      LATER,
    ).conditions;
    expect(changedConditions(delivered, failing).map((c) => c.type)).toEqual([
      'Ready',
      'DestinationReady',
    ]);
  });
});
