/** What the receiver offers: a listening receiver, and where it logs. */

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
  /**
   * Starts leaving the load balancers that route here: `/readyz` answers 503, so that the
   * replica's endpoint is removed, while audit requests are still accepted and every answer
   * closes its connection, so that the client's next one goes where the Service now points.
   */
  leave(): void;
  /** Stops accepting requests, finishes those in flight, releases the port. */
  close(): Promise<void>;
  /**
   * Re-reads the certificate, key and client CA files and serves them from the next TLS handshake
   * on. Rejects with a CertificateError, keeping the current ones, when the files are unusable.
   * Does nothing on an insecure (plain HTTP) receiver.
   */
  reloadCertificates(): Promise<void>;
}
