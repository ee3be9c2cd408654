// The registry of destination kinds (src/outputs/kinds.ts): what each kind says about a sink's
// destinations (their outputs, the Secret keys they read, how their batches are cut), as the
// data plane and the operator ask it. Pure: builds sinks from manifests, starts no process.
import { describe, expect, it } from 'vitest';
import {
  batchingFor,
  createOutputs,
  DESTINATION_NAMES,
  destinationSecrets,
} from '../../../src/outputs/kinds.ts';
import { ServerSlots } from '../../../src/outputs/server-slots.ts';
import { sinkFromResource } from '../../../src/sinks/spec.ts';
import type { Sink } from '../../../src/sinks/types.ts';
import { type Json, pipelineResource } from '../../support/resources.ts';

const SETTINGS = { clusterWideNamespaces: [], requireDestination: false };
const POLICY = { rules: [{ level: 'Metadata' }] };
const INFLUX = { url: 'http://influxdb.monitoring:8086', org: 'platform', bucket: 'audit' };
const WEBHOOK = { clientConfig: { url: 'https://audit.example.com/events' } };
const TOKEN = { name: 'influx-token', key: 'token' };

function sink(spec: Json): Sink {
  return sinkFromResource(pipelineResource({ policy: POLICY, ...spec }), SETTINGS);
}

const context = {
  label: 'shop/orders',
  secret: () => 'secret-token',
  serverSlots: new ServerSlots(),
};

describe('the destination kinds', () => {
  it('are influxdb and webhook, in the order their outputs are made', () => {
    expect(DESTINATION_NAMES).toEqual(['influxdb', 'webhook']);
  });

  it.each([
    ['no destination', {}, []],
    ['InfluxDB', { influxdb: INFLUX }, ['influxdb']],
    ['a webhook', { webhook: WEBHOOK }, ['webhook']],
    ['both', { webhook: WEBHOOK, influxdb: INFLUX }, ['influxdb', 'webhook']],
  ])('make one output per destination: %s', (_, spec, kinds) => {
    expect(createOutputs(sink(spec), context).map((o) => o.kind)).toEqual(kinds);
  });

  it("take an InfluxDB output's request slots from the process's set for its server", () => {
    const serverSlots = new ServerSlots(3);
    createOutputs(sink({ webhook: WEBHOOK, influxdb: INFLUX }), { ...context, serverSlots });
    createOutputs(sink({ influxdb: { ...INFLUX, bucket: 'other', createBucket: true } }), {
      ...context,
      serverSlots,
    });
    expect([...serverSlots.load()].map((load) => load.server)).toEqual([
      'http://influxdb.monitoring:8086',
    ]);
  });

  it.each([
    ['InfluxDB without a token', { influxdb: INFLUX }, []],
    ['InfluxDB with a token', { influxdb: { ...INFLUX, tokenSecretRef: TOKEN } }, [TOKEN]],
    ['a webhook', { webhook: WEBHOOK }, []],
  ])('read the Secret keys their destinations name: %s', (_, spec, refs) => {
    expect(destinationSecrets(sink(spec))).toEqual(refs);
  });

  it.each([
    ['influxdb', { influxdb: INFLUX }, { size: 2_500, flushIntervalMs: 1_000 }],
    [
      'influxdb',
      { influxdb: { ...INFLUX, batchSize: 250, flushInterval: '50ms' } },
      { size: 250, flushIntervalMs: 50 },
    ],
    // The apiserver's own webhook batch size, sent at once.
    ['webhook', { webhook: WEBHOOK }, { size: 400, flushIntervalMs: 0 }],
    // The embedded line-protocol file: one append and sync per batch.
    ['file', {}, { size: 1_000, flushIntervalMs: 0 }],
  ] as const)('cut the batches of a %s output as its spec says', (kind, spec, batching) => {
    expect(batchingFor(sink(spec), kind)).toEqual(batching);
  });
});
