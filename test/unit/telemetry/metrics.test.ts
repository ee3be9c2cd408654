// Sink, destination server and durable log metrics as Prometheus reads them.
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { ServerSlots } from '../../../src/outputs/server-slots.ts';
import type { Sink } from '../../../src/sinks/types.ts';
import type { LogStats } from '../../../src/spool/log/index.ts';
import {
  LogMetrics,
  registerServerSlotMetrics,
  SinkMetrics,
} from '../../../src/telemetry/metrics.ts';

const sink = (key: string) => ({ key }) as Sink;

describe('sink metrics', () => {
  it('adds up what each sink received and dropped by reason, batch after batch', async () => {
    const registry = new Registry();
    const metrics = new SinkMetrics(registry, () => new Map([['AuditSink/all', 3]]));
    metrics.routed(sink('AuditSink/all'), 7, { policy: 3, namespace: 0 });
    metrics.routed(sink('AuditSink/all'), 2, { policy: 0, namespace: 0 });
    metrics.routed(sink('AuditPipeline/shop/orders'), 1, { policy: 1, namespace: 8 });
    metrics.routed(sink('AuditPipeline/shop/orders'), 0, { policy: 0, namespace: 2 });
    metrics.overflowed(sink('AuditSink/all'), 4);
    const text = await registry.metrics();
    expect(text).toContain('kube_audit_sink_received_events_total{sink="AuditSink/all"} 12');
    expect(text).toContain(
      'kube_audit_sink_received_events_total{sink="AuditPipeline/shop/orders"} 12',
    );
    expect(text).toContain(
      'kube_audit_sink_dropped_events_total{sink="AuditSink/all",reason="policy"} 3',
    );
    expect(text).toContain(
      'kube_audit_sink_dropped_events_total{sink="AuditSink/all",reason="overflow"} 4',
    );
    expect(text).toContain(
      'kube_audit_sink_dropped_events_total{sink="AuditPipeline/shop/orders",reason="namespace"} 10',
    );
    expect(text).toContain('kube_audit_sink_queue_events{sink="AuditSink/all"} 3');
  });

  it('counts each routed event once, however often and whenever the counters are read', async () => {
    const registry = new Registry();
    const metrics = new SinkMetrics(registry, () => new Map());
    const shop = sink('AuditPipeline/shop/orders');
    metrics.routed(shop, 0, { policy: 0, namespace: 400 });
    const first = await registry.metrics();
    // A sink that kept nothing yet has its received series, and no policy drops.
    expect(first).toContain(
      'kube_audit_sink_received_events_total{sink="AuditPipeline/shop/orders"} 400',
    );
    expect(first).not.toContain('reason="policy"');
    expect(await registry.metrics()).toBe(first);
    // One that has seen only an empty batch has its series too, at zero.
    metrics.routed(sink('AuditPipeline/shop/empty'), 0, { policy: 0, namespace: 0 });
    expect(await registry.metrics()).toContain(
      'kube_audit_sink_received_events_total{sink="AuditPipeline/shop/empty"} 0',
    );
    metrics.routed(shop, 3, { policy: 1, namespace: 396 });
    metrics.routed(shop, 0, { policy: 0, namespace: 400 });
    const received = await registry.getSingleMetric('kube_audit_sink_received_events_total')?.get();
    expect(received?.values).toEqual([
      { value: 1200, labels: { sink: 'AuditPipeline/shop/orders' } },
      { value: 0, labels: { sink: 'AuditPipeline/shop/empty' } },
    ]);
    const text = await registry.metrics();
    expect(text).toContain(
      'kube_audit_sink_received_events_total{sink="AuditPipeline/shop/orders"} 1200',
    );
    expect(text).toContain(
      'kube_audit_sink_dropped_events_total{sink="AuditPipeline/shop/orders",reason="namespace"} 1196',
    );
    expect(text).toContain(
      'kube_audit_sink_dropped_events_total{sink="AuditPipeline/shop/orders",reason="policy"} 1',
    );
  });
});

describe('destination server metrics', () => {
  it("read each server's requests in flight and waiting at each scrape, and add up the seconds waited", async () => {
    const registry = new Registry();
    const servers = new ServerSlots(1);
    registerServerSlotMetrics(registry, servers);
    const slots = servers.for('http://user:secret@influxdb.monitoring:8086/base');
    const held = await slots.acquire();
    const waiting = slots.acquire();
    const label = '{server="http://influxdb.monitoring:8086"}';
    let text = await registry.metrics();
    expect(text).toContain(`kube_audit_output_server_requests_in_flight${label} 1`);
    expect(text).toContain(`kube_audit_output_server_requests_waiting${label} 1`);
    expect(text).toContain(`kube_audit_output_server_wait_seconds_total${label} 0`);
    expect(text).not.toContain('secret');
    await new Promise((resolve) => setTimeout(resolve, 30));
    held();
    (await waiting)();
    const first = slots.waitedSeconds;
    expect(first).toBeGreaterThan(0.02);
    text = await registry.metrics();
    expect(text).toContain(`kube_audit_output_server_requests_in_flight${label} 0`);
    expect(text).toContain(`kube_audit_output_server_requests_waiting${label} 0`);
    // Read twice, the counter holds the same total: what was waited is added once.
    await registry.metrics();
    text = await registry.metrics();
    expect(text).toContain(`kube_audit_output_server_wait_seconds_total${label} ${first}`);
  });
});

describe('durable log metrics', () => {
  const stats = (over: Partial<LogStats>): LogStats => ({
    segments: 1,
    records: 0,
    bytes: 0,
    writes: 0,
    streams: 1,
    relocations: 0,
    readHandles: 0,
    cachedRecords: 0,
    cachedBytes: 0,
    cacheLimitBytes: 0,
    segmentReads: 0,
    ...over,
  });

  it('shows the log on disk and its syncs, and keeps counting across a reopened log', async () => {
    const registry = new Registry();
    const metrics = new LogMetrics(registry);
    // Before the log opens: nothing on disk, nothing counted.
    let text = await registry.metrics();
    expect(text).toContain('kube_audit_log_bytes 0');
    expect(text).toContain('kube_audit_log_sync_duration_seconds_count 0');

    let current = stats({ bytes: 4096, segments: 2, segmentReads: 7, relocations: 1 });
    metrics.opened({ stats: () => current });
    metrics.wrote(3000, 0.002);
    metrics.wrote(1096, 0.03);
    text = await registry.metrics();
    expect(text).toContain('kube_audit_log_bytes 4096');
    expect(text).toContain('kube_audit_log_segments 2');
    expect(text).toContain('kube_audit_log_written_bytes_total 4096');
    expect(text).toContain('kube_audit_log_sync_duration_seconds_bucket{le="0.0025"} 1');
    expect(text).toContain('kube_audit_log_sync_duration_seconds_bucket{le="0.05"} 2');
    expect(text).toContain('kube_audit_log_segment_reads_total 7');
    expect(text).toContain('kube_audit_log_relocations_total 1');

    current = stats({ bytes: 4096, segmentReads: 10, relocations: 1 });
    text = await registry.metrics();
    expect(text).toContain('kube_audit_log_segment_reads_total 10');

    // One more read, then closed with its last sink and opened again before the next scrape: the
    // read is kept, the new log counts from 0, the metrics go on.
    current = stats({ bytes: 4096, segmentReads: 11, relocations: 1 });
    const reopened = stats({ bytes: 512, segmentReads: 2 });
    metrics.opened({ stats: () => reopened });
    metrics.wrote(512, undefined);
    text = await registry.metrics();
    expect(text).toContain('kube_audit_log_bytes 512');
    expect(text).toContain('kube_audit_log_segment_reads_total 13');
    expect(text).toContain('kube_audit_log_relocations_total 1');
    expect(text).toContain('kube_audit_log_written_bytes_total 4608');
    // Without fsync there is no sync to time.
    expect(text).toContain('kube_audit_log_sync_duration_seconds_count 2');
  });
});
