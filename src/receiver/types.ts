/** The contract between the receiver and what it hands events to. */
import type { AuditEvent } from '../audit/types.ts';

/** Which sinks a batch is for: every sink (fan-in endpoint) or one sink by its key. */
export type IngestTarget =
  { readonly kind: 'all' } | { readonly kind: 'sink'; readonly key: string };

/** Whether a batch was queued, or refused because a queue is full. */
export type IngestResult =
  | { readonly ok: true; readonly accepted: number }
  | { readonly ok: false; readonly reason: 'full'; readonly retryAfterSeconds: number };

/** What the receiver hands events to: routing, queueing (and spooling) happen behind it. Resolves only once events are queued durably. */
export interface Ingest {
  ingest(events: AuditEvent[], target: IngestTarget): Promise<IngestResult>;
  hasSink(key: string): boolean;
  /**
   * Seconds to ask the sender to wait when the target cannot take a batch now (its queues are
   * full), checked before the body is read; undefined to go on.
   */
  refusing?(target: IngestTarget): number | undefined;
}

/**
 * Where the receiver reports what happens outside a request (certificate reloads, failed ingests),
 * pino-style: bindings first, a constant message second, errors under `err`.
 */
export type ReceiverLogger = (
  level: 'info' | 'warn' | 'error',
  bindings: Readonly<Record<string, unknown>>,
  message: string,
) => void;

/** A listening receiver. */
export interface Receiver {
  /** Base URL it listens on, e.g. `https://127.0.0.1:8443`. */
  readonly url: string;
  /** Stops accepting requests, finishes those in flight, releases the port. */
  close(): Promise<void>;
  /**
   * Re-reads the certificate, key and client CA files and serves them from the next TLS handshake
   * on. Rejects with a CertificateError, keeping the current ones, when the files are unusable.
   * Does nothing on an insecure (plain HTTP) receiver.
   */
  reloadCertificates(): Promise<void>;
}
