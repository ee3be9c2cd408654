/**
 * Policy benchmark: events per second per core through parse, decide and enforce, for policies of
 * 1, 10 and 100 rules, on 400-event batches (the kube-apiserver's default webhook batch size) of
 * Metadata and RequestResponse events. The baseline is `JSON.parse` of the same batch, measured in
 * the same run, so ratios hold across machines.
 */
import { readFileSync } from 'node:fs';
import { parseAuditPayload } from '../src/audit/parse.ts';
import type { AuditEvent } from '../src/audit/types.ts';
import { applyPolicy, compilePolicy, decideLevel, loadPolicy } from '../src/policy/index.ts';
import type { Policy, PolicyRule } from '../src/policy/types.ts';
import { type HarnessOptions, type Measurement, measure } from './harness.ts';

const FIXTURES = new URL('../test/fixtures/apiserver-1.20/', import.meta.url);
const BATCH_SIZE = 400;

/** One workload's result, with its rate relative to the JSON.parse baseline of the same batch. */
export interface PolicyResult extends Measurement {
  readonly batch: 'Metadata' | 'RequestResponse';
  readonly ratioToJsonParse: number;
}

function recordedEvents(): AuditEvent[] {
  const lines = readFileSync(new URL('events.jsonl', FIXTURES), 'utf8').split('\n').filter(Boolean);
  return lines.map((line) => JSON.parse(line) as AuditEvent);
}

/** A 400-event v1 EventList body cut from the recorded events, at the given level. */
function batchBody(level: 'Metadata' | 'RequestResponse'): string {
  const recorded = recordedEvents();
  const items = Array.from({ length: BATCH_SIZE }, (_, i) => {
    const e = { ...(recorded[i % recorded.length] as AuditEvent), auditID: `bench-${i}` };
    if (level === 'Metadata') {
      delete e.requestObject;
      delete e.responseObject;
      e.level = 'Metadata';
    } else {
      e.level = 'RequestResponse';
    }
    return e;
  });
  return JSON.stringify({ kind: 'EventList', apiVersion: 'audit.k8s.io/v1', metadata: {}, items });
}

/**
 * A policy of `n` rules where only the last one matches: the worst case for first-match
 * evaluation. The others mix user, group, namespace/resource and non-resource rules.
 */
export function worstCasePolicy(n: number): Policy {
  const rules: PolicyRule[] = [];
  for (let i = 0; i < n - 1; i++) {
    switch (i % 4) {
      case 0:
        rules.push({ level: 'None', users: [`system:user-${i}`, `robot-${i}`] });
        break;
      case 1:
        rules.push({ level: 'Metadata', userGroups: [`group-${i}`], verbs: ['get', 'list'] });
        break;
      case 2:
        rules.push({
          level: 'Request',
          namespaces: [`tenant-${i}`],
          resources: [{ group: `g${i}.example.com`, resources: ['widgets', 'widgets/status'] }],
        });
        break;
      default:
        rules.push({ level: 'None', nonResourceURLs: [`/debug-${i}*`, `/metrics-${i}`] });
    }
  }
  rules.push({ level: 'RequestResponse', omitStages: ['RequestReceived'] });
  return { rules, omitManagedFields: true };
}

/** Runs the policy workloads. */
export function runPolicyBench(options: HarnessOptions): PolicyResult[] {
  const results: PolicyResult[] = [];
  const recordedPolicy = loadPolicy(
    readFileSync(new URL('audit-policy.yaml', FIXTURES), 'utf8'),
  ).policy;
  for (const batch of ['Metadata', 'RequestResponse'] as const) {
    const body = batchBody(batch);
    const events = parseAuditPayload(body).events;
    const baseline = measure(
      `${batch}: JSON.parse (baseline)`,
      BATCH_SIZE,
      () => JSON.parse(body),
      options,
    );
    const add = (m: Measurement) =>
      results.push({
        ...m,
        batch,
        ratioToJsonParse: Number((m.eventsPerSecond / baseline.eventsPerSecond).toFixed(2)),
      });
    add(baseline);
    add(measure(`${batch}: parse + validate`, BATCH_SIZE, () => parseAuditPayload(body), options));
    for (const [label, policy] of [
      ['recorded 5-rule policy', recordedPolicy],
      ['1 rule', worstCasePolicy(1)],
      ['10 rules, last matches', worstCasePolicy(10)],
      ['100 rules, last matches', worstCasePolicy(100)],
    ] as const) {
      const compiled = compilePolicy(policy);
      add(
        measure(
          `${batch}: decide, ${label}`,
          BATCH_SIZE,
          () => {
            let kept = 0;
            for (const e of events) if (decideLevel(compiled, e).emitted) kept++;
            return kept;
          },
          options,
        ),
      );
      add(
        measure(
          `${batch}: parse + decide + enforce, ${label}`,
          BATCH_SIZE,
          () => {
            let kept = 0;
            for (const e of parseAuditPayload(body).events)
              if (applyPolicy(compiled, e).event !== null) kept++;
            return kept;
          },
          options,
        ),
      );
    }
  }
  return results;
}
