/** The receiver's Prometheus metrics, registered on the registry the caller passes in. */
import { Counter, exponentialBuckets, Histogram, type Registry } from 'prom-client';

/** Bounded label values naming the route a request matched. */
export type EndpointLabel =
  | 'events'
  | 'sinks'
  | 'pipelines'
  | 'nativeSinks'
  | 'nativePipelines'
  | 'healthz'
  | 'readyz'
  | 'metrics'
  | 'unmatched';

/** The metrics one receiver records. */
export interface ReceiverMetrics {
  readonly requests: Counter<'endpoint' | 'status'>;
  readonly eventsReceived: Counter<'endpoint'>;
  readonly bodyBytes: Histogram<'endpoint'>;
  readonly ackLatency: Histogram<'endpoint' | 'status'>;
  readonly connectionsClosed: Counter<'limit'>;
}

/**
 * Creates the receiver metrics on `registry`, or reuses them when another receiver (a sink's
 * dedicated listener) already registered them there, so their counts add up.
 */
export function receiverMetrics(registry: Registry): ReceiverMetrics {
  return {
    requests: reuse(
      registry,
      'kube_audit_receiver_requests_total',
      Counter,
      (registers) =>
        new Counter({
          name: 'kube_audit_receiver_requests_total',
          help: 'HTTP requests answered by the receiver, by endpoint and status code.',
          labelNames: ['endpoint', 'status'] as const,
          registers,
        }),
    ),
    eventsReceived: reuse(
      registry,
      'kube_audit_receiver_events_received_total',
      Counter,
      (registers) =>
        new Counter({
          name: 'kube_audit_receiver_events_received_total',
          help: 'Audit events in request bodies that parsed, before they are handed to the sinks.',
          labelNames: ['endpoint'] as const,
          registers,
        }),
    ),
    bodyBytes: reuse(
      registry,
      'kube_audit_receiver_request_body_bytes',
      Histogram,
      (registers) =>
        new Histogram({
          name: 'kube_audit_receiver_request_body_bytes',
          help: 'Size of audit request bodies read, in bytes.',
          labelNames: ['endpoint'] as const,
          // 1 KiB to 256 MiB by factors of 4: one event to well above the default 100 MiB limit.
          buckets: exponentialBuckets(1024, 4, 10),
          registers,
        }),
    ),
    ackLatency: reuse(
      registry,
      'kube_audit_receiver_ack_latency_seconds',
      Histogram,
      (registers) =>
        new Histogram({
          name: 'kube_audit_receiver_ack_latency_seconds',
          help: 'Time from receiving an audit request to answering it, by endpoint and status code.',
          labelNames: ['endpoint', 'status'] as const,
          // Up to 30 s: the apiserver abandons a webhook request after 30 s (its `?timeout=30s`).
          buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
          registers,
        }),
    ),
    connectionsClosed: reuse(
      registry,
      'kube_audit_receiver_connections_closed_total',
      Counter,
      (registers) =>
        new Counter({
          name: 'kube_audit_receiver_connections_closed_total',
          help: 'Connections closed by an answer that said Connection: close on reaching a connection limit (requests or age), so that the client reconnects and its balancer picks a replica anew.',
          labelNames: ['limit'] as const,
          registers,
        }),
    ),
  };
}

function reuse<M extends object>(
  registry: Registry,
  name: string,
  type: abstract new (...args: never[]) => M,
  create: (registers: Registry[]) => M,
): M {
  const existing = registry.getSingleMetric(name);
  if (existing === undefined) return create([registry]);
  if (existing instanceof type) return existing;
  throw new Error(`metric ${name} is already registered with another type`);
}
