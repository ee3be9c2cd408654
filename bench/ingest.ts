/**
 * Ingest benchmark: what one received event costs on one core before any I/O, through the same
 * code the receiver and the delivery loop run: parse and validate the EventList body, route every
 * event through the sinks' tenant index and policies (with redaction and trimming), make the
 * spool's line of what each sink keeps (the text it came in when kept unchanged, that text with its
 * level replaced for a copy of an event without bodies, else serialised), and encode it as line
 * protocol. The baseline is `JSON.parse` of the same body, measured in the
 * same run.
 *
 * Sinks: one cluster-wide AuditSink with a 10-rule policy (measured also without the spool's
 * serialisation: parse, policy and line protocol only), then 10, 100 and 1,000 tenant
 * AuditPipelines (one namespace each, each with its own 10-rule policy) beside it, the events
 * spread over the tenants' namespaces: per-event cost should stay nearly flat. RequestResponse
 * batches also go to one sink whose policy keeps Metadata only: the receiver then leaves the
 * bodies out as it parses (checked, not built), as it does when no sink may keep one.
 *
 * `node bench/ingest.ts [--quick]` runs it alone.
 */
import { readFileSync } from 'node:fs';
import { parseAuditPayload } from '../src/audit/parse.ts';
import type { AuditEvent } from '../src/audit/types.ts';
import { LineProtocolEncoder } from '../src/outputs/influxdb/line-protocol.ts';
import { compilePolicy } from '../src/policy/index.ts';
import type { Policy } from '../src/policy/types.ts';
import { encodedAs, encodeEvent } from '../src/spool/format.ts';
import { textOf } from '../src/sinks/ingest.ts';
import { EventRouting, RouteIndex } from '../src/sinks/router.ts';
import { TAG_NAMES } from '../src/outputs/influxdb/schema.ts';
import type { Sink } from '../src/sinks/types.ts';
import {
  FULL,
  type HarnessOptions,
  type Measurement,
  measure,
  printPerCore,
  QUICK,
  sink,
} from './harness.ts';

const FIXTURES = new URL('../test/fixtures/apiserver-1.20/', import.meta.url);
const BATCH_SIZE = 400;

/** One ingest workload, relative to JSON.parse of the same body. */
export interface IngestResult extends Measurement {
  readonly batch: 'Metadata' | 'RequestResponse';
  readonly sinks: number;
  /** Whether each kept event is also serialised for the spool, as with a data directory. */
  readonly spool: boolean;
  /** Whether the sinks' policies keep Metadata only (no body kept, none built). */
  readonly metadataOnly: boolean;
  readonly ratioToJsonParse: number;
}

/** A policy shaped as platform teams write them: noise dropped, secrets at Metadata, then all. */
const POLICY: Policy = {
  omitStages: ['RequestReceived'],
  rules: [
    { level: 'None', users: ['system:kube-proxy'], verbs: ['watch'] },
    { level: 'None', userGroups: ['system:nodes'], verbs: ['get'], resources: [{ group: '' }] },
    { level: 'None', nonResourceURLs: ['/healthz*', '/version', '/readyz', '/livez'] },
    { level: 'None', resources: [{ group: '', resources: ['events'] }] },
    { level: 'None', resources: [{ group: 'coordination.k8s.io', resources: ['leases'] }] },
    { level: 'Metadata', resources: [{ group: '', resources: ['secrets', 'configmaps'] }] },
    { level: 'Metadata', resources: [{ group: 'authentication.k8s.io' }] },
    { level: 'Request', verbs: ['get', 'list', 'watch'] },
    { level: 'RequestResponse', resources: [{ group: '' }, { group: 'apps' }] },
    { level: 'Metadata' },
  ],
};

function recordedEvents(): AuditEvent[] {
  return readFileSync(new URL('events.jsonl', FIXTURES), 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as AuditEvent);
}

/** A 400-event EventList body; with tenants, each event's namespace is one of theirs. */
function batchBody(level: 'Metadata' | 'RequestResponse', tenants: number): string {
  const recorded = recordedEvents();
  const items = Array.from({ length: BATCH_SIZE }, (_, i) => {
    const e = structuredClone(recorded[i % recorded.length] as AuditEvent);
    e.auditID = `ingest-${i}`;
    e.level = level;
    if (level === 'Metadata') {
      delete e.requestObject;
      delete e.responseObject;
    }
    if (tenants > 0 && e.objectRef?.namespace !== undefined) {
      const namespace = `tenant-${i % tenants}`;
      e.objectRef.namespace = namespace;
      e.requestURI = e.requestURI.replace(/\/namespaces\/[^/]+/, `/namespaces/${namespace}`);
    }
    return e;
  });
  return JSON.stringify({ kind: 'EventList', apiVersion: 'audit.k8s.io/v1', metadata: {}, items });
}

/** {@link POLICY} with every rule that keeps a body at Metadata instead. */
const METADATA_POLICY: Policy = {
  ...POLICY,
  rules: POLICY.rules.map((rule) =>
    rule.level === 'None' ? rule : { ...rule, level: 'Metadata' },
  ),
};

function sinkOf(name: string, namespace: string | null, policy = POLICY): Sink {
  return {
    key: namespace === null ? `AuditSink/${name}` : `AuditPipeline/${namespace}/${name}`,
    scope: { namespace },
    compiledPolicy: compilePolicy(policy),
  } as unknown as Sink;
}

/**
 * Parse, route and encode per core, for 1 sink and beside 10, 100 and 1,000 tenants; for 1 sink
 * also without the spool's serialisation (parse, policy and line protocol only).
 */
export function runIngestBench(options: HarnessOptions): IngestResult[] {
  const results: IngestResult[] = [];
  for (const level of ['Metadata', 'RequestResponse'] as const) {
    const baselineBody = batchBody(level, 0);
    const baseline = measure('JSON.parse', BATCH_SIZE, () => JSON.parse(baselineBody), options);
    const variants = [
      { tenants: 0, spool: false, metadataOnly: false },
      { tenants: 0, spool: true, metadataOnly: false },
      ...(level === 'RequestResponse' ? [{ tenants: 0, spool: true, metadataOnly: true }] : []),
      { tenants: 10, spool: true, metadataOnly: false },
      { tenants: 100, spool: true, metadataOnly: false },
      { tenants: 1000, spool: true, metadataOnly: false },
    ];
    for (const { tenants, spool, metadataOnly } of variants) {
      const body = batchBody(level, tenants);
      const policy = metadataOnly ? METADATA_POLICY : POLICY;
      const entries = [
        sinkOf('cluster', null, policy),
        ...Array.from({ length: tenants }, (_, i) => sinkOf('trail', `tenant-${i}`, policy)),
      ].map((s) => ({
        sink: s,
        encoder: new LineProtocolEncoder({
          measurement: 'kubernetes_audit',
          tags: TAG_NAMES,
          staticTags: {},
          sink: s.key,
        }),
      }));
      const index = new RouteIndex(entries);
      const settings = { allowSecretPayloads: false };
      const ingest = () => {
        let bytes = 0;
        // As the receiver does: bodies no sink may keep are checked, not built.
        const payload = parseAuditPayload(body, undefined, { omitBodies: !index.keepsBodies });
        const { events } = payload;
        for (const [i, event] of events.entries()) {
          const routing = new EventRouting(event, settings);
          for (const entry of index.candidates(routing)) {
            const outcome = routing.route(entry.sink);
            if (!outcome.kept) continue;
            // As the receiver's sinks do: an event kept as it came is stored as its text, a copy
            // of one without bodies at another level as that text with the level replaced.
            const source = textOf(payload, i, event, outcome.event);
            if (spool) {
              bytes += (
                source === undefined ? encodeEvent(outcome.event) : encodedAs(outcome.event, source)
              ).bytes;
            }
            bytes += entry.encoder.encode(outcome.event).length;
          }
        }
        return bytes;
      };
      const sinks = `${tenants === 0 ? '1 sink' : `1 sink + ${tenants} tenants`}${metadataOnly ? ' at Metadata' : ''}`;
      const name = `${level}, ${sinks}, ${spool ? 'with spool serialisation' : 'parse + policy + line protocol'}`;
      const m = measure(name, BATCH_SIZE, ingest, options);
      results.push({
        ...m,
        batch: level,
        sinks: tenants + 1,
        spool,
        metadataOnly,
        ratioToJsonParse: Number((m.eventsPerSecond / baseline.eventsPerSecond).toFixed(2)),
      });
    }
  }
  return results;
}

if (import.meta.main) {
  const results = runIngestBench(process.argv.includes('--quick') ? QUICK : FULL);
  printPerCore('Ingest: parse, route (tenant index + policy), spool and line protocol', results);
  console.log(`checksum ${sink()}`);
}
