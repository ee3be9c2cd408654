/**
 * The audit webhook receiver (SPEC 4.2): one fastify listener with the fan-in endpoint, one endpoint
 * per sink, health, readiness and metrics. The only module that imports fastify.
 */
import Fastify, {
  type FastifyInstance,
  type FastifyRequest,
  type FastifyServerFactory,
} from 'fastify';
import { createServer as createHttpServer, type IncomingMessage } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import { AuditParseError, parseAuditPayload } from '../audit/parse.ts';
import type { Ingest, IngestResult, IngestTarget } from '../sinks/ingest.ts';
import { sinkKey } from '../sinks/types.ts';
import {
  type AuthTarget,
  authorize,
  bearerToken,
  clientCertificateState,
  type Credentials,
  nativeSignatureMatches,
} from './auth.ts';
import { RECEIVED_BODIES, readBodyText } from './body.ts';
import { ConnectionLimits } from './connections.ts';
import { type ErrorBody, RECEIVER_ERRORS, ReceiverError } from './errors.ts';
import type { AccessDecision } from './metrics-access.ts';
import { type EndpointLabel, receiverMetrics } from './metrics.ts';
import { type ReceiverOptions, validateReceiverOptions } from './options.ts';
import { CertificateReloader, filesSignature, loadTlsMaterial, tlsServerOptions } from './tls.ts';
import type { Receiver } from './types.ts';

/** The paths the receiver serves. */
export const RECEIVER_ROUTES = Object.freeze({
  events: '/audit/v1/events',
  sinks: '/audit/v1/sinks/:name',
  pipelines: '/audit/v1/pipelines/:namespace/:name',
  nativeSinks: '/audit/v1/native/:signature/sinks/:name',
  nativePipelines: '/audit/v1/native/:signature/pipelines/:namespace/:name',
  healthz: '/healthz',
  readyz: '/readyz',
  metrics: '/metrics',
});

type AuditEndpoint = 'events' | 'sinks' | 'pipelines' | 'nativeSinks' | 'nativePipelines';

const ENDPOINT_BY_ROUTE = new Map<string, EndpointLabel>(
  Object.entries(RECEIVER_ROUTES).map(([label, url]) => [url, label as EndpointLabel]),
);
const AUDIT_ENDPOINTS = new Set<EndpointLabel>([
  'events',
  'sinks',
  'pipelines',
  'nativeSinks',
  'nativePipelines',
]);

// The apiserver abandons a webhook request after 30 s (the `?timeout=30s` it appends), so a request
// still open after twice that is stuck or hostile (slowloris) and only holds memory.
const REQUEST_TIMEOUT_MS = 60_000;
// Longer than the 60 s idle timeout of common load balancers, as fastify's own default: a server
// closing an idle connection while the apiserver reuses it costs a failed request and a retry.
const KEEP_ALIVE_TIMEOUT_MS = 72_000;
// Kubernetes object names are DNS subdomains of up to 253 characters; fastify's default is 100.
const MAX_NAME_LENGTH = 253;
// With Retry-After the apiserver's client retries a 503 after that many seconds; without it, the
// audit webhook retries only after its backoff (10 s by default), spending one of its five
// attempts. 1 s, because readiness and a shutdown (the next connection reaches another replica)
// both resolve within seconds.
const UNAVAILABLE_RETRY_AFTER_SECONDS = 1;

// 10 s: a failing review is reported within one scrape interval, and at most 6 times a minute.
const REVIEW_FAILURE_LOG_INTERVAL_MS = 10_000;

const JSON_CHARSET = /;\s*charset\s*=\s*"?([^";\s]*)"?/i;

// No route declares a JSON schema: bodies are parsed and checked by parseAuditPayload, answers are
// written as they are. Compilers of our own keep fastify from loading its defaults, Ajv and
// fast-json-stringify (5 MiB of resident memory, for code that would never run); a schema added
// to a route fails when the application starts, not when the route is first called.
const noSchemas = () => () => {
  throw new Error('the receiver declares no JSON schemas: parse and check in the handler');
};

/** The fastify application of a receiver, for `inject()` tests and for {@link startReceiver}. */
export interface ReceiverApp {
  readonly app: FastifyInstance;
  /**
   * From now on `/readyz` answers 503, and every answer to a request read in full closes its
   * connection; audit requests are still accepted.
   */
  readonly markLeaving: () => void;
  /** From now on audit requests are answered 503 with Retry-After and the connection is closed. */
  readonly markClosing: () => void;
}

/**
 * Builds the receiver's fastify application without listening. `serverFactory` creates the
 * underlying server (HTTPS for {@link startReceiver}); plain HTTP when omitted.
 */
export function createReceiverApp(
  input: ReceiverOptions,
  ingest: Ingest,
  registry: Registry,
  serverFactory: FastifyServerFactory = (handler) => createHttpServer(handler),
): ReceiverApp {
  const options = validateReceiverOptions(input);
  const metrics = receiverMetrics(registry);
  const limits = new ConnectionLimits({
    maxRequests: options.maxRequestsPerConnection,
    maxAgeMs: options.maxConnectionAgeMs,
  });
  let closing = false;
  let leaving = false;
  const credentials = (): Credentials => ({
    receiverTokens: options.tokens(),
    sinkTokens: options.sinkTokens(),
  });
  // A dedicated listener feeds its own sink whatever the path, so it authorises as that sink's.
  const authTarget = (target: IngestTarget | undefined): AuthTarget =>
    options.sinkKey !== undefined
      ? { kind: 'sink', key: options.sinkKey }
      : target?.kind === 'sink'
        ? target
        : { kind: 'all' };

  const app = Fastify({
    logger: false,
    bodyLimit: options.bodyLimitBytes,
    // Our own 503 during shutdown carries Retry-After; fastify's does not, and the apiserver would
    // retry the batch only after its backoff.
    return503OnClosing: false,
    forceCloseConnections: 'idle',
    routerOptions: { maxParamLength: MAX_NAME_LENGTH },
    schemaController: {
      compilersFactory: { buildValidator: noSchemas, buildSerializer: noSchemas },
    },
    serverFactory: (handler, opts) => {
      const server = serverFactory(handler, opts);
      // With a server factory fastify leaves the timeouts to us.
      server.requestTimeout = REQUEST_TIMEOUT_MS;
      server.keepAliveTimeout = KEEP_ALIVE_TIMEOUT_MS;
      return server;
    },
  });

  // Only JSON, kept as text: parseAuditPayload checks nesting depth before JSON.parse runs, which a
  // pre-parsed body would defeat. Every other content type is answered 415 by fastify. The body is
  // read by readBodyText, through the process's reused buffer, rather than by fastify's reader.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser(
    'application/json',
    async (request: FastifyRequest, payload: IncomingMessage) => {
      const charset = JSON_CHARSET.exec(request.headers['content-type'] ?? '')?.[1]?.toLowerCase();
      if (charset !== undefined && charset !== 'utf-8' && charset !== 'utf8') {
        // Kubernetes JSON is UTF-8 only; decoding another charset as UTF-8 would corrupt it silently.
        throw new ReceiverError('UNSUPPORTED_MEDIA_TYPE', {
          detail: `charset ${charset.slice(0, 40)}`,
        });
      }
      const body = await readBodyText(payload, {
        limit: options.bodyLimitBytes,
        contentLength: request.headers['content-length'],
        buffer: RECEIVED_BODIES,
      });
      metrics.bodyBytes.observe({ endpoint: endpointOf(request) }, body.bytes);
      return body.text;
    },
  );

  app.setErrorHandler((error: unknown, _request, reply) => {
    const response = errorResponse(error, options.bodyLimitBytes);
    if (response.body.code === 'INTERNAL') {
      options.log?.('error', { err: error }, 'request failed');
    }
    return reply.code(response.statusCode).headers(response.headers).send(response.body);
  });

  app.setNotFoundHandler((_request, reply) =>
    reply.code(404).send(
      errorBody(
        new ReceiverError('NOT_FOUND', {
          detail:
            'audit events go to POST /audit/v1/events, /audit/v1/sinks/<name> or /audit/v1/pipelines/<namespace>/<name>',
        }),
      ),
    ),
  );

  if (limits.enabled) {
    app.addHook('onRequest', (request, _reply, done) => {
      limits.arrived(request.raw.socket);
      done();
    });
  }
  // The answer that reaches a limit says so, and Node.js closes the connection once it is sent:
  // the client opens a new one for its next request, which kube-proxy may send to another
  // replica. While leaving, every answer does: the new connection goes where the Service now
  // points. Never once the body is still arriving, which would make the kernel reset the
  // connection and the client might lose the answer.
  app.addHook('onSend', (request, reply, payload, done) => {
    const read = readInFull(request.raw);
    if (leaving) {
      if (read) reply.header('connection', 'close');
    } else if (limits.enabled) {
      const limit = limits.closes(request.raw.socket, read);
      if (limit !== undefined) {
        reply.header('connection', 'close');
        metrics.connectionsClosed.inc({ limit });
      }
    }
    done(null, payload);
  });

  app.addHook('onResponse', async (request, reply) => {
    const endpoint = endpointOf(request);
    const status = String(reply.statusCode);
    metrics.requests.inc({ endpoint, status });
    if (AUDIT_ENDPOINTS.has(endpoint)) {
      metrics.ackLatency.observe({ endpoint, status }, reply.elapsedTime / 1000);
    }
  });

  // Runs before the body is read: an unauthenticated, premature or misrouted request never costs
  // a 100 MiB read. Authentication comes first so that nothing else is revealed to strangers.
  const admissionError = (
    request: FastifyRequest<{ Params: Record<string, string> }>,
    target: IngestTarget | undefined,
  ): ReceiverError | undefined => {
    if (closing) return shuttingDown();
    const signature = request.params.signature;
    if (signature !== undefined) {
      // Native AuditSinks post without credentials: the signed path is the credential.
      if (
        options.nativeKey === undefined ||
        target?.kind !== 'sink' ||
        !nativeSignatureMatches(options.nativeKey, target.key, signature)
      ) {
        return new ReceiverError('SINK_NOT_FOUND');
      }
    } else if (!options.insecure) {
      const auth = authorize(
        request.headers.authorization,
        clientCertificateState(request.raw.socket),
        authTarget(target),
        credentials(),
      );
      if (!auth.ok) return authenticationError(auth.code);
    }
    if (!options.readiness()) return notReady();
    if (target === undefined) return new ReceiverError('SINK_NOT_FOUND');
    if (target.kind === 'sink' && !ingest.hasSink(target.key)) {
      return new ReceiverError('SINK_NOT_FOUND', { detail: target.key });
    }
    const encoding = request.headers['content-encoding'];
    if (encoding !== undefined && encoding.toLowerCase() !== 'identity') {
      return new ReceiverError('UNSUPPORTED_CONTENT_ENCODING');
    }
    // Full queues refuse the batch before it is read: under overload, refused batches cost nothing.
    const wait = ingest.refusing?.(target);
    if (wait !== undefined) return queueFull(wait);
    return undefined;
  };

  const receive = (
    endpoint: AuditEndpoint,
    target: (params: Record<string, string>) => IngestTarget | undefined,
  ) => {
    app.post<{ Params: Record<string, string> }>(
      RECEIVER_ROUTES[endpoint],
      {
        onRequest: (request, _reply, done) => {
          done(admissionError(request, target(request.params)));
        },
      },
      async (request, reply) => {
        // The onRequest hook already refused requests without a target.
        const to = target(request.params) as IngestTarget;
        const body = request.body;
        // No Content-Type and no body: nothing fastify's parser saw.
        if (typeof body !== 'string') throw new ReceiverError('UNSUPPORTED_MEDIA_TYPE');
        // Bodies no sink may keep are checked, not built; ingest() routes in this same turn.
        const payload = parseAuditPayload(body, options.parseLimits, {
          omitBodies: ingest.keepsBodies?.(to) === false,
        });
        const { events } = payload;
        metrics.eventsReceived.inc({ endpoint }, events.length);
        if (events.length === 0) return reply.code(200).send({ accepted: 0 });
        let result: IngestResult;
        try {
          result = await ingest.ingest(events, to, payload);
        } catch (err) {
          options.log?.('error', { err, endpoint, events: events.length }, 'ingest failed');
          // 500 makes the apiserver retry; the cause stays in the log, not in the response.
          throw new ReceiverError('INGEST_FAILED', { cause: err });
        }
        if (!result.ok) throw queueFull(result.retryAfterSeconds);
        return reply.code(200).send({ accepted: result.accepted });
      },
    );
  };

  receive('events', () => ({ kind: 'all' }));
  receive('sinks', ({ name }) =>
    isNameSegment(name)
      ? { kind: 'sink', key: sinkKey({ kind: 'AuditSink', namespace: '', name }) }
      : undefined,
  );
  receive('pipelines', ({ namespace, name }) =>
    isNameSegment(namespace) && isNameSegment(name)
      ? { kind: 'sink', key: sinkKey({ kind: 'AuditPipeline', namespace, name }) }
      : undefined,
  );

  receive('nativeSinks', ({ name }) =>
    isNameSegment(name)
      ? { kind: 'sink', key: sinkKey({ kind: 'AuditSink', namespace: '', name }) }
      : undefined,
  );
  receive('nativePipelines', ({ namespace, name }) =>
    isNameSegment(namespace) && isNameSegment(name)
      ? { kind: 'sink', key: sinkKey({ kind: 'AuditPipeline', namespace, name }) }
      : undefined,
  );

  app.get(RECEIVER_ROUTES.healthz, () => ({ status: 'ok' }));
  app.get(RECEIVER_ROUTES.readyz, () => {
    if (closing || leaving) throw shuttingDown();
    if (!options.readiness()) throw notReady();
    return { status: 'ok' };
  });
  // Metrics name every sink and error, so they are read with credentials too (ADR 0014).
  let lastReviewFailureLog = Number.NEGATIVE_INFINITY;
  let reviewFailures = 0;
  const metricsAdmission = async (request: FastifyRequest): Promise<void> => {
    if (options.insecure) return;
    const access = options.metricsAccess;
    if (access === undefined) {
      // Standalone: what the fan-in endpoint accepts, answered as it answers (a sink's own token
      // is 403 here, as there).
      const auth = authorize(
        request.headers.authorization,
        clientCertificateState(request.raw.socket),
        { kind: 'all' },
        credentials(),
      );
      if (!auth.ok) throw authenticationError(auth.code);
      return;
    }
    const token = bearerToken(request.headers.authorization);
    if (token === undefined) throw authenticationError('METRICS_UNAUTHENTICATED');
    let decision: AccessDecision;
    try {
      decision = await access(token);
    } catch (err) {
      // Once per interval: an unreachable apiserver or a flood of made-up tokens would otherwise
      // log on every scrape.
      reviewFailures++;
      if (Date.now() - lastReviewFailureLog >= REVIEW_FAILURE_LOG_INTERVAL_MS) {
        options.log?.(
          'warn',
          { err, failures: reviewFailures },
          'the credentials for /metrics could not be reviewed',
        );
        lastReviewFailureLog = Date.now();
        reviewFailures = 0;
      }
      throw new ReceiverError('METRICS_ACCESS_UNAVAILABLE', {
        cause: err,
        headers: { 'retry-after': String(UNAVAILABLE_RETRY_AFTER_SECONDS) },
      });
    }
    if (decision.allowed) return;
    if (decision.reason === 'unauthenticated') throw authenticationError('METRICS_UNAUTHENTICATED');
    throw new ReceiverError('METRICS_FORBIDDEN');
  };
  app.get(RECEIVER_ROUTES.metrics, { onRequest: metricsAdmission }, async (_request, reply) => {
    const text = await registry.metrics();
    return reply.type(registry.contentType).send(text);
  });

  return {
    app,
    markLeaving: () => {
      leaving = true;
    },
    markClosing: () => {
      closing = true;
    },
  };
}

/**
 * Starts a receiver listening on `options.host:options.port`: HTTPS with the configured
 * certificates (reloaded when their files change), or plain HTTP when `insecure`.
 *
 * @throws CertificateError when the certificate files are unusable; the listen error when the
 *   address is taken.
 */
export async function startReceiver(
  input: ReceiverOptions,
  ingest: Ingest,
  metrics: Registry,
): Promise<Receiver> {
  // Validated again, so a hand-built object cannot bypass the loopback rule for insecure mode.
  const options = validateReceiverOptions(input);
  const files = options.insecure ? undefined : options.tls;
  // Signature before contents: a change during the read shows up at the first check.
  const signature = files === undefined ? '' : await filesSignature(files);
  const material = files === undefined ? undefined : await loadTlsMaterial(files);

  let tlsServer: HttpsServer | undefined;
  const { app, markLeaving, markClosing } = createReceiverApp(
    options,
    ingest,
    metrics,
    (handler) => {
      if (material === undefined) return createHttpServer(handler);
      tlsServer = createHttpsServer(tlsServerOptions(material), handler);
      return tlsServer;
    },
  );
  try {
    await app.listen({ host: options.host, port: options.port });
  } catch (err) {
    await app.close();
    throw err;
  }

  const reloader =
    tlsServer === undefined || files === undefined
      ? undefined
      : new CertificateReloader(tlsServer, files, signature, options.log);
  reloader?.watch(options.certificateCheckIntervalMs);

  const address = app.server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  let closed: Promise<void> | undefined;
  return {
    url: `${material === undefined ? 'http' : 'https'}://${host}:${address.port}`,
    leave: markLeaving,
    close() {
      closed ??= (async () => {
        markClosing();
        reloader?.stop();
        await app.close();
      })();
      return closed;
    },
    reloadCertificates: () => reloader?.reload() ?? Promise.resolve(),
  };
}

/**
 * Whether the request has been read to its end: its body consumed, or none announced (a GET's
 * `complete` stays false until someone reads the empty body, which no route does).
 */
function readInFull(request: IncomingMessage): boolean {
  if (request.complete) return true;
  const length = request.headers['content-length'];
  return (
    (length === undefined || length === '0') && request.headers['transfer-encoding'] === undefined
  );
}

// A name with a slash (sent percent-encoded) could make two different sinks share one key.
function isNameSegment(segment: string | undefined): segment is string {
  return segment !== undefined && segment !== '' && !segment.includes('/');
}

function endpointOf(request: FastifyRequest): EndpointLabel {
  return ENDPOINT_BY_ROUTE.get(request.routeOptions.url ?? '') ?? 'unmatched';
}

/** 401s say which scheme to use (RFC 9110); 403s do not, the credentials were understood. */
function authenticationError(
  code:
    | 'UNAUTHENTICATED'
    | 'INVALID_TOKEN'
    | 'UNTRUSTED_CLIENT_CERTIFICATE'
    | 'ENDPOINT_FORBIDDEN'
    | 'METRICS_UNAUTHENTICATED',
): ReceiverError {
  return new ReceiverError(
    code,
    RECEIVER_ERRORS[code].statusCode === 401 ? { headers: { 'www-authenticate': 'Bearer' } } : {},
  );
}

function notReady(): ReceiverError {
  return new ReceiverError('NOT_READY', {
    headers: { 'retry-after': String(UNAVAILABLE_RETRY_AFTER_SECONDS) },
  });
}

/** 429 with Retry-After in whole seconds, the only form the apiserver reads. */
function queueFull(retryAfterSeconds: number): ReceiverError {
  const seconds = Number.isFinite(retryAfterSeconds)
    ? Math.max(1, Math.ceil(retryAfterSeconds))
    : 1;
  return new ReceiverError('QUEUE_FULL', { headers: { 'retry-after': String(seconds) } });
}

function shuttingDown(): ReceiverError {
  return new ReceiverError('SHUTTING_DOWN', {
    headers: { 'retry-after': String(UNAVAILABLE_RETRY_AFTER_SECONDS), connection: 'close' },
  });
}

interface ErrorResponse {
  readonly statusCode: number;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: ErrorBody;
}

// fastify's own errors the receiver meets, by their code.
const FASTIFY_ERRORS: Readonly<Record<string, ReceiverError['code']>> = {
  FST_ERR_CTP_BODY_TOO_LARGE: 'BODY_TOO_LARGE',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'UNSUPPORTED_MEDIA_TYPE',
};

/** Maps anything a request can fail with to a status and a `{code, message}` body. */
function errorResponse(error: unknown, bodyLimitBytes: number): ErrorResponse {
  if (error instanceof ReceiverError) {
    return { statusCode: error.statusCode, headers: error.headers, body: errorBody(error) };
  }
  if (error instanceof AuditParseError) {
    return { statusCode: 400, headers: {}, body: { code: error.code, message: error.message } };
  }
  const code = fastifyCode(error);
  const mapped = code === undefined ? undefined : FASTIFY_ERRORS[code];
  if (mapped !== undefined) {
    const detail = mapped === 'BODY_TOO_LARGE' ? `limit ${bodyLimitBytes} bytes` : undefined;
    const err = new ReceiverError(mapped, detail === undefined ? {} : { detail });
    return { statusCode: err.statusCode, headers: {}, body: errorBody(err) };
  }
  const status = statusCodeOf(error);
  if (status !== undefined && status >= 400 && status < 500) {
    // fastify's client errors (bad Content-Length, aborted body) name no secrets.
    const detail = code ?? undefined;
    const err = new ReceiverError('BAD_REQUEST', detail === undefined ? {} : { detail });
    return { statusCode: status, headers: {}, body: errorBody(err) };
  }
  const err = new ReceiverError('INTERNAL');
  return { statusCode: err.statusCode, headers: {}, body: errorBody(err) };
}

function errorBody(error: ReceiverError): ErrorBody {
  return { code: error.code, message: error.message };
}

function fastifyCode(error: unknown): string | undefined {
  if (typeof error !== 'object' || error === null || !('code' in error)) return undefined;
  const code = error.code;
  return typeof code === 'string' && code.startsWith('FST_') ? code : undefined;
}

function statusCodeOf(error: unknown): number | undefined {
  if (typeof error !== 'object' || error === null || !('statusCode' in error)) return undefined;
  const status = error.statusCode;
  return typeof status === 'number' ? status : undefined;
}
