/**
 * Receiver settings: validated once, with every bad field named, and frozen. Pure: no file is read
 * here (certificate files are read when the receiver starts and on every reload).
 */
import { DEFAULT_PARSE_LIMITS, type ParseLimits } from '../audit/parse.ts';
import { isRecord } from '../audit/types.ts';
import { isLoopbackHost } from '../config/loopback.ts';
import { SETTINGS_DEFAULTS } from '../config/settings.ts';
import { ReceiverOptionsError } from './errors.ts';
import type { TokenDigests } from './auth.ts';
import type { AccessDecision } from './metrics-access.ts';
import type { ReceiverLogger } from './types.ts';

/** PEM files of the serving certificate, and of the CA that signs accepted client certificates. */
export interface ReceiverTlsFiles {
  readonly certFile: string;
  readonly keyFile: string;
  /** When set, clients may authenticate with a certificate signed by this CA (mTLS). */
  readonly clientCAFile?: string;
}

/** Validated, frozen receiver settings. */
export interface ReceiverOptions {
  /** Address to listen on. */
  readonly host: string;
  /** Port to listen on; 0 picks a free one. */
  readonly port: number;
  /** Serving certificate; required unless `insecure`. */
  readonly tls?: ReceiverTlsFiles;
  /** Plain HTTP without authentication, for a loopback address only (local trials, benchmarks). */
  readonly insecure: boolean;
  /** Accepted bearer tokens, read again on every request so that rotated Secrets apply at once. */
  readonly tokens: () => ReadonlySet<string>;
  /**
   * Each sink's own bearer tokens by sink key, accepted on that sink's endpoints only (a 403
   * elsewhere); read on every request, like `tokens`.
   */
  readonly sinkTokens: () => ReadonlyMap<string, TokenDigests>;
  /**
   * The sink a dedicated listener feeds: every request to it is authorised as a request to that
   * sink's endpoint, whatever its path.
   */
  readonly sinkKey?: string;
  /** Largest request body accepted; larger ones are answered 413 before they are read. */
  readonly bodyLimitBytes: number;
  /** Limits applied while decoding a body (events per request, JSON depth). */
  readonly parseLimits: ParseLimits;
  /** Whether the audit endpoints accept events now (e.g. sinks and spool loaded). */
  readonly readiness: () => boolean;
  /** How often the certificate files are checked for changes; 0 turns the check off. */
  readonly certificateCheckIntervalMs: number;
  /** Where certificate reloads and failed ingests are reported. */
  readonly log?: ReceiverLogger;
  /**
   * The key that signs native AuditSink endpoints (`/audit/v1/native/<signature>/...`), which
   * the apiserver calls without credentials; absent, those endpoints do not exist.
   */
  readonly nativeKey?: string;
  /**
   * Who may read `/metrics`: given, a bearer token decided by this function (a cached TokenReview
   * and SubjectAccessReview in `run`); absent, the credentials the audit endpoints accept. Open
   * only when `insecure`.
   */
  readonly metricsAccess?: (token: string) => Promise<AccessDecision>;
  /**
   * A connection is closed after this many requests (the last one answered with
   * `Connection: close`), so that a client holding one connection is rebalanced; 0: no limit.
   */
  readonly maxRequestsPerConnection: number;
  /**
   * A connection is closed at its first answer after this age (counted from its first request,
   * varied by ±10 % per connection); 0: no limit.
   */
  readonly maxConnectionAgeMs: number;
}

/** What callers pass to {@link validateReceiverOptions}: the settings, defaults left out. */
export type ReceiverOptionsInput = Partial<ReceiverOptions> & {
  readonly host: string;
  readonly port: number;
};

/** Defaults of the optional settings; each says where its value comes from. */
export const RECEIVER_DEFAULTS = Object.freeze({
  insecure: false,
  /**
   * 100 MiB: 400 events (the apiserver's default `--audit-webhook-batch-max-size`) of 256 KiB each.
   * Most events are a few KiB; 256 KiB leaves room for RequestResponse events carrying large
   * objects, so a default batch is never refused for its size.
   */
  bodyLimitBytes: 400 * 256 * 1024,
  parseLimits: DEFAULT_PARSE_LIMITS,
  /**
   * 10 s: the kubelet refreshes mounted Secrets about once a minute, so a rotated certificate is
   * served well within that; a stat of two or three files is negligible work.
   */
  certificateCheckIntervalMs: 10_000,
  /** A setting of its own (`--max-requests-per-connection`); see SETTINGS_DEFAULTS for why. */
  maxRequestsPerConnection: SETTINGS_DEFAULTS.maxRequestsPerConnection,
  /** A setting of its own (`--max-connection-age-seconds`); see SETTINGS_DEFAULTS for why. */
  maxConnectionAgeMs: SETTINGS_DEFAULTS.maxConnectionAgeSeconds * 1000,
});

const KNOWN_FIELDS = new Set<string>([
  'host',
  'port',
  'tls',
  'insecure',
  'tokens',
  'sinkTokens',
  'sinkKey',
  'bodyLimitBytes',
  'parseLimits',
  'readiness',
  'certificateCheckIntervalMs',
  'log',
  'nativeKey',
  'metricsAccess',
  'maxRequestsPerConnection',
  'maxConnectionAgeMs',
]);
const TLS_FIELDS = new Set<string>(['certFile', 'keyFile', 'clientCAFile']);
const PARSE_LIMIT_FIELDS = new Set<string>(['maxEvents', 'maxDepth']);

const NO_TOKENS: ReadonlySet<string> = new Set();
const NO_SINK_TOKENS: ReadonlyMap<string, TokenDigests> = new Map();
const ALWAYS_READY = (): boolean => true;

/**
 * Validates receiver settings and fills in defaults.
 *
 * @throws ReceiverOptionsError naming every bad field.
 */
export function validateReceiverOptions(input: unknown): ReceiverOptions {
  if (!isRecord(input)) throw new ReceiverOptionsError(['expected an object']);
  const problems: string[] = [];
  const add = (path: string, message: string) => problems.push(`${path}: ${message}`);
  for (const key of Object.keys(input)) {
    if (!KNOWN_FIELDS.has(key)) add(key, 'unknown field');
  }

  const host = input.host;
  if (typeof host !== 'string' || host === '')
    add('host', 'Required value: an address to listen on');

  const port = input.port;
  if (!isIntegerIn(port, 0, 65_535))
    add('port', `expected an integer from 0 to 65535, got ${describe(port)}`);

  const insecure = input.insecure ?? RECEIVER_DEFAULTS.insecure;
  if (typeof insecure !== 'boolean')
    add('insecure', `expected true or false, got ${describe(insecure)}`);

  const tls = validateTls(input.tls, add);
  if (insecure === true) {
    if (input.tls !== undefined) add('tls', 'must not be set when insecure is true');
    // Without TLS and authentication anyone who can reach the port could inject audit events.
    if (typeof host === 'string' && host !== '' && !isLoopbackHost(host)) {
      add(
        'insecure',
        `allowed only on a loopback address (127.0.0.0/8, ::1, localhost), not ${JSON.stringify(host)}`,
      );
    }
  } else if (input.tls === undefined) {
    add('tls', 'Required value: a certificate and key (or insecure: true on a loopback address)');
  }

  const tokens = input.tokens;
  if (tokens !== undefined && typeof tokens !== 'function') {
    add('tokens', `expected a function returning the accepted tokens, got ${describe(tokens)}`);
  } else if (
    tokens === undefined &&
    insecure !== true &&
    tls !== undefined &&
    tls.clientCAFile === undefined
  ) {
    // Nothing could ever authenticate: fail now rather than answer every request 401.
    add(
      'tokens',
      'Required value: bearer tokens, unless tls.clientCAFile admits client certificates',
    );
  }

  const sinkTokens = input.sinkTokens;
  if (sinkTokens !== undefined && typeof sinkTokens !== 'function') {
    add(
      'sinkTokens',
      `expected a function returning each sink's tokens, got ${describe(sinkTokens)}`,
    );
  }
  const sinkKey = input.sinkKey;
  if (sinkKey !== undefined && (typeof sinkKey !== 'string' || sinkKey === '')) {
    add('sinkKey', `expected a sink key, got ${describe(sinkKey)}`);
  }

  const bodyLimitBytes = input.bodyLimitBytes ?? RECEIVER_DEFAULTS.bodyLimitBytes;
  if (!isIntegerIn(bodyLimitBytes, 1, Number.MAX_SAFE_INTEGER)) {
    add('bodyLimitBytes', `expected a positive integer, got ${describe(bodyLimitBytes)}`);
  }

  const parseLimits = validateParseLimits(input.parseLimits, add);

  const readiness = input.readiness ?? ALWAYS_READY;
  if (typeof readiness !== 'function')
    add('readiness', `expected a function, got ${describe(readiness)}`);

  const interval = input.certificateCheckIntervalMs ?? RECEIVER_DEFAULTS.certificateCheckIntervalMs;
  // setInterval's own ceiling (2^31 - 1 ms); above it Node fires after 1 ms instead.
  if (!isIntegerIn(interval, 0, 2_147_483_647)) {
    add('certificateCheckIntervalMs', `expected a non-negative integer, got ${describe(interval)}`);
  }

  const log = input.log;
  if (log !== undefined && typeof log !== 'function')
    add('log', `expected a function, got ${describe(log)}`);

  const nativeKey = input.nativeKey;
  // 16 characters: a guessable key would make every native endpoint guessable.
  if (nativeKey !== undefined && (typeof nativeKey !== 'string' || nativeKey.length < 16)) {
    add('nativeKey', 'expected a secret of at least 16 characters');
  }

  const metricsAccess = input.metricsAccess;
  if (metricsAccess !== undefined && typeof metricsAccess !== 'function') {
    add('metricsAccess', `expected a function, got ${describe(metricsAccess)}`);
  }

  const maxRequests = input.maxRequestsPerConnection ?? RECEIVER_DEFAULTS.maxRequestsPerConnection;
  if (!isIntegerIn(maxRequests, 0, Number.MAX_SAFE_INTEGER)) {
    add(
      'maxRequestsPerConnection',
      `expected a non-negative integer (0: no limit), got ${describe(maxRequests)}`,
    );
  }
  const maxAge = input.maxConnectionAgeMs ?? RECEIVER_DEFAULTS.maxConnectionAgeMs;
  // The age is compared with timestamps only, but anything beyond setTimeout's range is a mistake.
  if (!isIntegerIn(maxAge, 0, 2_147_483_647)) {
    add(
      'maxConnectionAgeMs',
      `expected a non-negative integer of milliseconds (0: no limit), got ${describe(maxAge)}`,
    );
  }

  if (problems.length > 0) throw new ReceiverOptionsError(problems);

  // Every check above passed, so the values have the types the narrowing could not carry over.
  const options: ReceiverOptions = {
    host: host as string,
    port: port as number,
    ...(tls === undefined ? {} : { tls }),
    insecure: insecure as boolean,
    tokens: (tokens as (() => ReadonlySet<string>) | undefined) ?? (() => NO_TOKENS),
    sinkTokens:
      (sinkTokens as (() => ReadonlyMap<string, TokenDigests>) | undefined) ??
      (() => NO_SINK_TOKENS),
    ...(sinkKey === undefined ? {} : { sinkKey: sinkKey as string }),
    bodyLimitBytes: bodyLimitBytes as number,
    parseLimits: parseLimits as ParseLimits,
    readiness: readiness as () => boolean,
    certificateCheckIntervalMs: interval as number,
    ...(log === undefined ? {} : { log: log as ReceiverLogger }),
    ...(nativeKey === undefined ? {} : { nativeKey: nativeKey as string }),
    ...(metricsAccess === undefined
      ? {}
      : { metricsAccess: metricsAccess as (token: string) => Promise<AccessDecision> }),
    maxRequestsPerConnection: maxRequests as number,
    maxConnectionAgeMs: maxAge as number,
  };
  return Object.freeze(options);
}

function validateTls(
  value: unknown,
  add: (path: string, message: string) => void,
): ReceiverTlsFiles | undefined {
  if (value === undefined) return undefined;
  if (!isRecord(value)) {
    add('tls', `expected an object with certFile and keyFile, got ${describe(value)}`);
    return undefined;
  }
  for (const key of Object.keys(value)) {
    if (!TLS_FIELDS.has(key)) add(`tls.${key}`, 'unknown field');
  }
  const file = (key: string, required: boolean): string | undefined => {
    const v = value[key];
    if (v === undefined && !required) return undefined;
    if (typeof v !== 'string' || v === '') {
      add(
        `tls.${key}`,
        v === undefined
          ? 'Required value: a PEM file path'
          : `expected a file path, got ${describe(v)}`,
      );
      return undefined;
    }
    return v;
  };
  const certFile = file('certFile', true);
  const keyFile = file('keyFile', true);
  const clientCAFile = file('clientCAFile', false);
  if (certFile === undefined || keyFile === undefined) return undefined;
  return Object.freeze({
    certFile,
    keyFile,
    ...(clientCAFile === undefined ? {} : { clientCAFile }),
  });
}

function validateParseLimits(
  value: unknown,
  add: (path: string, message: string) => void,
): ParseLimits | undefined {
  if (value === undefined) return RECEIVER_DEFAULTS.parseLimits;
  if (!isRecord(value)) {
    add('parseLimits', `expected an object with maxEvents and maxDepth, got ${describe(value)}`);
    return undefined;
  }
  for (const key of Object.keys(value)) {
    if (!PARSE_LIMIT_FIELDS.has(key)) add(`parseLimits.${key}`, 'unknown field');
  }
  const limit = (key: 'maxEvents' | 'maxDepth'): number | undefined => {
    const v = value[key] ?? DEFAULT_PARSE_LIMITS[key];
    if (!isIntegerIn(v, 1, Number.MAX_SAFE_INTEGER)) {
      add(`parseLimits.${key}`, `expected a positive integer, got ${describe(v)}`);
      return undefined;
    }
    return v;
  };
  const maxEvents = limit('maxEvents');
  const maxDepth = limit('maxDepth');
  if (maxEvents === undefined || maxDepth === undefined) return undefined;
  return Object.freeze({ maxEvents, maxDepth });
}

function isIntegerIn(value: unknown, min: number, max: number): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= min && value <= max;
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (value === undefined) return 'nothing';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'string')
    return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value);
  if (typeof value === 'number' || typeof value === 'boolean')
    return `${typeof value} ${String(value)}`;
  return `a ${typeof value}`;
}
