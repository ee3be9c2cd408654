// Fuzzing sinkFromResource (src/sinks/spec.ts) with fast-check: arbitrary values, resources of the
// right kind with arbitrary specs, and random edits of the valid manifests and the samples. Each
// becomes a Sink or a SinkSpecError naming every bad field, never another exception, and quickly.
// Pure: starts no process.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type SinkSettings, SinkSpecError, sinkFromResource } from '../../../src/sinks/spec.ts';
import { samples } from '../../support/crd-schema.ts';
import { VALID_RESOURCES } from '../../support/valid-resources.ts';
import { mutate, mutations, nested, oddValue, trickyString, unknownKey } from './json-mutation.ts';

/** The operator's settings and standalone mode's, which needs no destination. */
const SETTINGS: readonly SinkSettings[] = [
  { clusterWideNamespaces: ['kube-audit'], requireDestination: true },
  { clusterWideNamespaces: [], requireDestination: false },
];

// A real manifest takes well under 1 ms; 50 ms leaves room for a loaded machine, not for work
// that grows faster than the input.
const BUDGET_MS = 50;

/**
 * `path: message`, the path a field of the resource: `spec.policy.rules[0].level`,
 * `spec.influxdb.staticTags["k8s.cluster"]`.
 */
const FIELD_PROBLEM =
  /^(?:apiVersion|kind|metadata\.(?:name|namespace)|spec(?:\.[A-Za-z]+|\[\d+\]|\["(?:[^"\\]|\\.)*"\])*): \S/u;

/** The single problem of a resource that is no object: it has no field to name. */
const NOT_AN_OBJECT = 'expected an object';

type Outcome = { readonly sink: true } | { readonly problems: readonly string[] };

function outcomeOf(resource: unknown, settings: SinkSettings): Outcome {
  try {
    const sink = sinkFromResource(resource, settings);
    // What an accepted resource always has: a name, and a pipeline its namespace.
    expect(sink.ref.name).not.toBe('');
    if (sink.ref.kind === 'AuditPipeline') expect(sink.ref.namespace).not.toBe('');
    expect(sink.compiledPolicy.rules).toHaveLength(sink.policy.rules.length);
    return { sink: true };
  } catch (err) {
    if (err instanceof SinkSpecError) return { problems: err.problems };
    throw err;
  }
}

/** Runs sinkFromResource once more when it was slow, so a GC pause alone fails nothing. */
function timedOutcome(resource: unknown, settings: SinkSettings): Outcome {
  let outcome: Outcome | undefined;
  let fastest = Number.POSITIVE_INFINITY;
  for (let attempt = 0; attempt < 2 && fastest > BUDGET_MS; attempt++) {
    const start = performance.now();
    outcome = outcomeOf(resource, settings);
    fastest = Math.min(fastest, performance.now() - start);
  }
  if (fastest > BUDGET_MS) {
    throw new Error(`took ${fastest.toFixed(1)} ms, over the ${BUDGET_MS} ms budget`);
  }
  return outcome as Outcome;
}

/** How often each outcome occurred, so a generator that only ever hits one shows up. */
const tally = { sinks: 0, refused: 0 };

/** A Sink, or a SinkSpecError whose every problem starts with the field it is about. */
function expectSinkOrFieldProblems(resource: unknown): void {
  for (const settings of SETTINGS) {
    const outcome = timedOutcome(resource, settings);
    if ('sink' in outcome) {
      tally.sinks++;
      continue;
    }
    tally.refused++;
    expect(outcome.problems.length).toBeGreaterThan(0);
    const isObject = typeof resource === 'object' && resource !== null && !Array.isArray(resource);
    if (!isObject) {
      expect(outcome.problems).toEqual([NOT_AN_OBJECT]);
      continue;
    }
    for (const problem of outcome.problems) expect(problem).toMatch(FIELD_PROBLEM);
  }
}

const BASES: readonly { readonly name: string; readonly manifest: Record<string, unknown> }[] = [
  ...VALID_RESOURCES,
  ...samples()
    .filter(({ resource }) => resource.kind !== 'Secret')
    .map(({ file, resource }) => ({ name: file, manifest: resource })),
];

/** A spec with the fields these resources know, each holding anything. */
const anySpec = fc.dictionary(
  fc.constantFrom('policy', 'influxdb', 'webhook', 'receiver', 'status'),
  fc.oneof(
    fc.anything({ maxDepth: 3 }),
    oddValue,
    fc.dictionary(
      fc.oneof(
        fc.constantFrom(
          'level',
          'stages',
          'rules',
          'apiVersion',
          'kind',
          'url',
          'org',
          'bucket',
          'tokenSecretRef',
          'measurement',
          'createBucket',
          'retention',
          'batchSize',
          'flushInterval',
          'tags',
          'staticTags',
          'throttle',
          'clientConfig',
          'port',
          'tlsSecretName',
        ),
        unknownKey,
      ),
      oddValue,
      { maxKeys: 6 },
    ),
  ),
  { maxKeys: 5 },
);

const resourceOfAKind = fc.record(
  {
    apiVersion: fc.oneof(fc.constant('kube-audit.dev/v1alpha1'), oddValue),
    kind: fc.constantFrom('AuditSink', 'AuditPipeline'),
    metadata: fc.oneof(
      fc.record(
        {
          name: fc.oneof(fc.constant('trail'), trickyString),
          namespace: fc.oneof(fc.constant('team-a'), trickyString),
          generation: oddValue,
        },
        { requiredKeys: [] },
      ),
      oddValue,
    ),
    spec: fc.oneof(anySpec, oddValue),
  },
  { requiredKeys: ['kind'] },
);

describe('sinkFromResource on arbitrary input', () => {
  it('answers any JSON value with a sink or a SinkSpecError naming the fields', () => {
    fc.assert(fc.property(fc.jsonValue(), expectSinkOrFieldProblems), { numRuns: 1_000 });
  });

  it('answers any JavaScript value with a sink or a SinkSpecError naming the fields', () => {
    fc.assert(fc.property(fc.anything(), expectSinkOrFieldProblems), { numRuns: 1_000 });
  });

  it('builds a sink or names the bad fields for a resource of either kind with any spec', () => {
    fc.assert(fc.property(resourceOfAKind, expectSinkOrFieldProblems), { numRuns: 1_000 });
  });
});

describe('sinkFromResource on edited valid manifests', () => {
  it.each(BASES.map((b) => [b.name, b.manifest] as const))(
    '%s: builds a sink before any edit',
    (_name, manifest) => {
      expect(sinkFromResource(manifest, SETTINGS[0] as SinkSettings).ref.name).not.toBe('');
    },
  );

  it('builds a sink or names the bad fields after fields are deleted, retyped or added', () => {
    const base = fc.constantFrom(...BASES.map((b) => b.manifest));
    tally.sinks = 0;
    tally.refused = 0;
    fc.assert(
      fc.property(base, mutations, (manifest, edits) => {
        expectSinkOrFieldProblems(mutate(manifest, edits));
      }),
      { numRuns: 1_000 },
    );
    // Many edits are harmless (an unknown key, a deleted default): both outcomes must occur.
    expect(tally.sinks).toBeGreaterThan(50);
    expect(tally.refused).toBeGreaterThan(50);
  });
});

describe('sinkFromResource on deeply nested values', () => {
  // Where a value of the wrong type is quoted in the problem with JSON.stringify.
  const quotedField = fc.constantFrom(
    ['kind'],
    ['apiVersion'],
    ['spec', 'policy', 'level'],
    ['spec', 'policy', 'stages', 0],
    ['spec', 'influxdb', 'tags', 0],
    ['spec', 'influxdb', 'batchSize'],
    ['spec', 'webhook', 'throttle', 'qps'],
  );

  function withValueAt(path: readonly (string | number)[], value: unknown): unknown {
    const resource: Record<string, unknown> = {
      apiVersion: 'kube-audit.dev/v1alpha1',
      kind: 'AuditSink',
      metadata: { name: 'deep' },
      spec: {
        policy: { level: 'Metadata', stages: ['ResponseComplete'] },
        influxdb: { url: 'http://influxdb:8086', org: 'o', bucket: 'b', tags: ['verb'] },
        webhook: { throttle: { qps: 1 }, clientConfig: { url: 'https://audit.example.com' } },
      },
    };
    let node = resource as Record<string | number, unknown>;
    for (const key of path.slice(0, -1)) node = node[key] as Record<string | number, unknown>;
    node[path[path.length - 1] as string | number] = value;
    return resource;
  }

  it('names the field of a value nested 1,000 levels deep', () => {
    fc.assert(
      fc.property(quotedField, fc.boolean(), (path, inObject) => {
        expectSinkOrFieldProblems(withValueAt(path, nested(1_000, inObject)));
      }),
      { numRuns: 50 },
    );
  });

  // Problems quote a bad value only a few levels deep: quoting it whole would overflow the stack
  // some 10,000 levels down (JSON.parse accepts far deeper).
  it('names the field of a value nested 20,000 levels deep', () => {
    fc.assert(
      fc.property(
        quotedField,
        fc.boolean(),
        fc.integer({ min: 20_000, max: 30_000 }),
        (path, inObject, depth) => {
          expectSinkOrFieldProblems(withValueAt(path, nested(depth, inObject)));
        },
      ),
      { numRuns: 20 },
    );
  });
});
