/**
 * Every error the receiver answers with or throws, each with a stable `code`. HTTP errors carry their
 * status and a fixed message: clients and dashboards key on the code, and no message ever echoes a
 * credential or an internal error's text.
 */
import type { AuditParseErrorCode } from '../audit/parse.ts';

/** The HTTP errors of the receiver: status and fixed message per stable code. */
export const RECEIVER_ERRORS = Object.freeze({
  UNAUTHENTICATED: {
    statusCode: 401,
    message: 'missing credentials: send a bearer token or a client certificate',
  },
  // 401 as RFC 6750's invalid_token: a token no one accepts authenticates nobody.
  INVALID_TOKEN: { statusCode: 401, message: 'the bearer token is not accepted' },
  // 403 as RFC 6750's insufficient_scope: the token is known, but is not for this endpoint.
  ENDPOINT_FORBIDDEN: {
    statusCode: 403,
    message: "this credential may write to its own sink's endpoints only",
  },
  UNTRUSTED_CLIENT_CERTIFICATE: {
    statusCode: 403,
    message: 'the client certificate is not signed by the client CA',
  },
  METRICS_UNAUTHENTICATED: {
    statusCode: 401,
    message:
      'missing or unknown bearer token: send the token of a Kubernetes user or ServiceAccount',
  },
  METRICS_FORBIDDEN: {
    statusCode: 403,
    message: 'not allowed to get the non-resource URL /metrics',
  },
  METRICS_ACCESS_UNAVAILABLE: {
    statusCode: 503,
    message: 'the Kubernetes API could not review the credentials: retry later',
  },
  NOT_FOUND: { statusCode: 404, message: 'no such endpoint' },
  SINK_NOT_FOUND: { statusCode: 404, message: 'no such sink' },
  BAD_REQUEST: { statusCode: 400, message: 'malformed HTTP request' },
  BODY_TOO_LARGE: { statusCode: 413, message: 'the request body exceeds the configured limit' },
  UNSUPPORTED_MEDIA_TYPE: {
    statusCode: 415,
    message: 'Content-Type must be application/json (UTF-8)',
  },
  UNSUPPORTED_CONTENT_ENCODING: {
    statusCode: 415,
    message: 'Content-Encoding is not supported: send the body uncompressed',
  },
  QUEUE_FULL: { statusCode: 429, message: 'the sink queues are full: retry later' },
  INGEST_FAILED: { statusCode: 500, message: 'the events could not be queued: retry later' },
  INTERNAL: { statusCode: 500, message: 'internal error' },
  NOT_READY: { statusCode: 503, message: 'the receiver is not ready: retry later' },
  SHUTTING_DOWN: { statusCode: 503, message: 'the receiver is shutting down: retry later' },
} as const satisfies Record<string, { readonly statusCode: number; readonly message: string }>);

/** Stable code of an HTTP error the receiver answers with. */
export type ReceiverErrorCode = keyof typeof RECEIVER_ERRORS;

/** The JSON body of every error response. */
export interface ErrorBody {
  readonly code: ReceiverErrorCode | AuditParseErrorCode;
  readonly message: string;
}

/** What a {@link ReceiverError} may add to its fixed message and response. */
export interface ReceiverErrorOptions extends ErrorOptions {
  /** Appended to the fixed message; must never hold a credential. */
  readonly detail?: string;
  /** Extra response headers, e.g. `Retry-After`. */
  readonly headers?: Readonly<Record<string, string>>;
}

/** An HTTP error answered to the client as `{code, message}` with its status. */
export class ReceiverError extends Error {
  override readonly name = 'ReceiverError';
  /** Stable error code. */
  readonly code: ReceiverErrorCode;
  /** HTTP status of the response. */
  readonly statusCode: number;
  /** Extra response headers. */
  readonly headers: Readonly<Record<string, string>>;

  constructor(code: ReceiverErrorCode, options: ReceiverErrorOptions = {}) {
    const { statusCode, message } = RECEIVER_ERRORS[code];
    super(options.detail === undefined ? message : `${message}: ${options.detail}`, options);
    this.code = code;
    this.statusCode = statusCode;
    this.headers = options.headers ?? {};
  }
}

/** Receiver options that cannot be used; `problems` names every bad field. Never retryable. */
export class ReceiverOptionsError extends Error {
  override readonly name = 'ReceiverOptionsError';
  /** Stable error code. */
  readonly code = 'INVALID_RECEIVER_OPTIONS';
  /** One entry per bad field, each starting with its path. */
  readonly problems: readonly string[];

  constructor(problems: readonly string[]) {
    super(`invalid receiver options: ${problems.join('; ')}`);
    this.problems = problems;
  }
}

/**
 * TLS files that could not be read or do not form a usable certificate, key and CA. On a reload the
 * previous certificates stay in use; the error says which file and why, never the file's content.
 */
export class CertificateError extends Error {
  override readonly name = 'CertificateError';
  /** Stable error code. */
  readonly code = 'CERTIFICATE_LOAD_FAILED';

  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
  }
}
