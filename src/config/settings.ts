/**
 * The operator's settings: one schema, each default documented beside its field, validated once at
 * start with every bad field named, then frozen. Flags and environment variables both feed it.
 */
import { isLoopbackHost } from './loopback.ts';

/** Log levels accepted by `--log-level`. */
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/** One of {@link LOG_LEVELS}. */
export type LogLevel = (typeof LOG_LEVELS)[number];

/** Validated, frozen settings of `standalone` (and, later, `run`). */
export interface Settings {
  /** `host:port` of the shared receiver listener. */
  readonly listen: { readonly host: string; readonly port: number };
  /** Plain HTTP without authentication; refused unless `listen` is a loopback address. */
  readonly insecure: boolean;
  readonly tlsCertFile: string | undefined;
  readonly tlsKeyFile: string | undefined;
  /** CA whose client certificates authenticate (mTLS). */
  readonly clientCAFile: string | undefined;
  /** Files holding accepted bearer tokens, one per line; re-read when they change. */
  readonly tokenFiles: readonly string[];
  /** Spool and embedded line-protocol files live here. */
  readonly dataDir: string;
  /** Cap of each sink's spool, in bytes; beyond it the sink's endpoint answers 429. */
  readonly spoolMaxBytes: number;
  /** Cap of each sink's dead-letter file, in bytes; refused events beyond it are dropped, counted. */
  readonly deadLetterMaxBytes: number;
  /** The operator's own namespace: Secrets of AuditSinks live here. */
  readonly namespace: string;
  /** Pipelines in these namespaces see every namespace's events. */
  readonly clusterWideNamespaces: readonly string[];
  /** Keep request and response bodies of Secrets and tokens (off: reduced to Metadata). */
  readonly allowSecretPayloads: boolean;
  /** Time to drain queues on SIGTERM before exiting. */
  readonly shutdownGraceSeconds: number;
  /**
   * The first seconds of that shutdown: readiness off, listeners still accepting and every answer
   * closing its connection, while load balancers stop sending new connections here.
   */
  readonly shutdownDelaySeconds: number;
  /**
   * Receivers close a connection after this many requests, so that kube-proxy spreads the
   * apiserver's webhook over the replicas; 0: no limit.
   */
  readonly maxRequestsPerConnection: number;
  /** Receivers close a connection at its first answer after this age (±10 %); 0: no limit. */
  readonly maxConnectionAgeSeconds: number;
  /**
   * Requests in flight to one InfluxDB server (scheme, host and port) at most, shared by every
   * sink writing there; further writes and bucket checks wait their turn.
   */
  readonly influxdbMaxRequestsPerServer: number;
  readonly logLevel: LogLevel;
  /** `run`: a kubeconfig file; absent means the pod's service account (in cluster). */
  readonly kubeconfig: string | undefined;
  /**
   * `run`: the receivers' base URL as the kube-apiserver reaches them (the Service's stable
   * ClusterIP, say `https://10.96.0.50`); shown as each sink's `status.endpoint` and used for
   * native AuditSinks. Absent: the shared listener's own URL.
   */
  readonly advertiseUrl: string | undefined;
  /** `run`: how often the leader writes each resource's status, at most. */
  readonly statusIntervalSeconds: number;
  /** `run`: the Lease (in {@link namespace}) that elects the replica writing status. */
  readonly leaseName: string;
  /** `run`: register native AuditSinks when the apiserver serves auditregistration (`auto`). */
  readonly nativeAuditSinks: 'auto' | 'off';
  /**
   * `run`: a file holding the secret key that signs native AuditSink endpoints, which carry no
   * credentials of their own; native mode needs it.
   */
  readonly nativeKeyFile: string | undefined;
  /** `run`: how long an allowed `/metrics` token is trusted without asking the apiserver again. */
  readonly metricsAuthAllowTtlSeconds: number;
  /** `run`: how long a refused `/metrics` token (unknown or not allowed) stays refused. */
  readonly metricsAuthDenyTtlSeconds: number;
}

/** What the command line and environment supply; everything optional, strings as typed. */
export type SettingsInput = Partial<Record<keyof Settings, unknown>>;

/** Defaults, each with where its value comes from. */
export const SETTINGS_DEFAULTS = Object.freeze({
  /** 8443: the conventional unprivileged HTTPS port; loopback until TLS is configured. */
  listen: '127.0.0.1:8443',
  insecure: false,
  dataDir: './kube-audit-data',
  /** 1 GiB per sink: about an hour of a busy apiserver's Metadata events for a sink that is down. */
  spoolMaxBytes: 1024 ** 3,
  /**
   * 64 MiB per sink: tens of thousands of refused events, more than a misconfiguration leaves
   * before someone looks, and little next to the spool.
   */
  deadLetterMaxBytes: 64 * 1024 ** 2,
  /** The namespace the Helm chart installs into. */
  namespace: 'kube-audit',
  allowSecretPayloads: false,
  /** 25 s: inside Kubernetes' default 30 s termination grace period, with room to exit. */
  shutdownGraceSeconds: 25,
  /**
   * 0: a process that no load balancer routes to closes its listeners at once. Behind a Service
   * (the chart sets 5 s), the seconds in which kube-proxy still sends new connections to a replica
   * that is going away: a refused connection costs the apiserver a retry after its backoff, and
   * the batch when every attempt is refused (docs/adr/0026).
   */
  shutdownDelaySeconds: 0,
  /**
   * 100 requests: under load the apiserver posts a batch about every second per connection (up to
   * 10 a second, its default webhook throttle), so a busy connection moves every 10 to 100 s; one
   * TLS handshake per 100 batches of up to 400 events costs well under 1 % of the work.
   */
  maxRequestsPerConnection: 100,
  /**
   * 60 s: bounds how long a quiet connection stays on one replica, so that after a rolling update
   * or a scale-up every replica has its share within about a minute (gRPC's max connection age
   * plays the same part). Only an answer can say `Connection: close`; an idle connection is ended
   * by the keep-alive timeout instead.
   */
  maxConnectionAgeSeconds: 60,
  /**
   * 128: with a thousand sinks on one influxd (2 cores), unbounded requests outlived their 10 s
   * deadline by the thousand under load, 256 still some, 128 none; fewer made points visible
   * later (ADR 0008). A sink holds at most two, so up to 64 sinks never wait.
   */
  influxdbMaxRequestsPerServer: 128,
  logLevel: 'info',
  /** 5 s: fresh enough for `kubectl get`, a few writes per minute per resource at most. */
  statusIntervalSeconds: 5,
  leaseName: 'kube-audit-operator',
  nativeAuditSinks: 'auto',
  /**
   * 60 s: a scraper asks every 15 to 60 s, so a busy Prometheus costs one review per replica per
   * minute, and a revoked binding stops working within a minute (controller-runtime keeps allowed
   * decisions 5 minutes).
   */
  metricsAuthAllowTtlSeconds: 60,
  /**
   * 10 s: a token just granted access works before the next scrape, and a stranger trying tokens
   * costs one review per token and 10 s (controller-runtime keeps denials 30 s).
   */
  metricsAuthDenyTtlSeconds: 10,
});

/** Settings that cannot be used; `problems` names every bad field. */
export class SettingsError extends Error {
  override readonly name = 'SettingsError';
  readonly code = 'INVALID_SETTINGS';
  readonly problems: readonly string[];

  constructor(problems: readonly string[]) {
    super(`invalid settings:\n  ${problems.join('\n  ')}`);
    this.problems = problems;
  }
}

/**
 * Validates settings and fills defaults.
 *
 * @throws SettingsError naming every bad field.
 */
export function validateSettings(
  input: SettingsInput,
  options: { readonly receiver: boolean } = { receiver: true },
): Settings {
  const problems: string[] = [];
  const str = (key: keyof Settings, fallback: string): string => {
    const value = input[key] ?? fallback;
    if (typeof value !== 'string' || value === '') {
      problems.push(`${key}: expected a non-empty string`);
      return fallback;
    }
    return value;
  };
  const optionalStr = (key: keyof Settings): string | undefined => {
    const value = input[key];
    if (value === undefined) return undefined;
    if (typeof value !== 'string' || value === '') {
      problems.push(`${key}: expected a file path`);
      return undefined;
    }
    return value;
  };
  const bool = (key: keyof Settings, fallback: boolean): boolean => {
    const value = input[key] ?? fallback;
    if (typeof value === 'boolean') return value;
    if (value === 'true') return true;
    if (value === 'false') return false;
    problems.push(`${key}: expected true or false, got ${JSON.stringify(value)}`);
    return fallback;
  };
  const int = (key: keyof Settings, fallback: number, min: number, max: number): number => {
    const raw = input[key] ?? fallback;
    const value = typeof raw === 'string' && /^\d+$/.test(raw) ? Number(raw) : raw;
    if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
      problems.push(
        `${key}: expected an integer from ${min} to ${max}, got ${JSON.stringify(raw)}`,
      );
      return fallback;
    }
    return value;
  };
  const list = (key: keyof Settings, fallback: readonly string[]): readonly string[] => {
    const value = input[key];
    if (value === undefined) return fallback;
    const items = typeof value === 'string' ? value.split(',').map((s) => s.trim()) : value;
    if (!Array.isArray(items) || items.some((s) => typeof s !== 'string' || s === '')) {
      problems.push(`${key}: expected a comma-separated list of names`);
      return fallback;
    }
    return items as string[];
  };

  const listen = parseListen(str('listen', SETTINGS_DEFAULTS.listen), problems);
  const namespace = str('namespace', SETTINGS_DEFAULTS.namespace);
  const logLevel = str('logLevel', SETTINGS_DEFAULTS.logLevel);
  if (!(LOG_LEVELS as readonly string[]).includes(logLevel)) {
    problems.push(
      `logLevel: expected one of ${LOG_LEVELS.join(', ')}, got ${JSON.stringify(logLevel)}`,
    );
  }
  const nativeMode = str('nativeAuditSinks', SETTINGS_DEFAULTS.nativeAuditSinks);
  if (nativeMode !== 'auto' && nativeMode !== 'off') {
    problems.push(`nativeAuditSinks: expected auto or off, got ${JSON.stringify(nativeMode)}`);
  }
  const settings: Settings = {
    listen,
    insecure: bool('insecure', SETTINGS_DEFAULTS.insecure),
    tlsCertFile: optionalStr('tlsCertFile'),
    tlsKeyFile: optionalStr('tlsKeyFile'),
    clientCAFile: optionalStr('clientCAFile'),
    tokenFiles: list('tokenFiles', []),
    dataDir: str('dataDir', SETTINGS_DEFAULTS.dataDir),
    spoolMaxBytes: int('spoolMaxBytes', SETTINGS_DEFAULTS.spoolMaxBytes, 1024 * 1024, 2 ** 50),
    deadLetterMaxBytes: int(
      'deadLetterMaxBytes',
      SETTINGS_DEFAULTS.deadLetterMaxBytes,
      1024 * 1024,
      2 ** 50,
    ),
    namespace,
    clusterWideNamespaces: list('clusterWideNamespaces', [namespace]),
    allowSecretPayloads: bool('allowSecretPayloads', SETTINGS_DEFAULTS.allowSecretPayloads),
    shutdownGraceSeconds: int(
      'shutdownGraceSeconds',
      SETTINGS_DEFAULTS.shutdownGraceSeconds,
      0,
      3600,
    ),
    shutdownDelaySeconds: int(
      'shutdownDelaySeconds',
      SETTINGS_DEFAULTS.shutdownDelaySeconds,
      0,
      3600,
    ),
    maxRequestsPerConnection: int(
      'maxRequestsPerConnection',
      SETTINGS_DEFAULTS.maxRequestsPerConnection,
      0,
      1_000_000,
    ),
    maxConnectionAgeSeconds: int(
      'maxConnectionAgeSeconds',
      SETTINGS_DEFAULTS.maxConnectionAgeSeconds,
      0,
      86_400,
    ),
    influxdbMaxRequestsPerServer: int(
      'influxdbMaxRequestsPerServer',
      SETTINGS_DEFAULTS.influxdbMaxRequestsPerServer,
      1,
      100_000,
    ),
    logLevel: logLevel as LogLevel,
    kubeconfig: optionalStr('kubeconfig'),
    advertiseUrl: optionalStr('advertiseUrl'),
    statusIntervalSeconds: int(
      'statusIntervalSeconds',
      SETTINGS_DEFAULTS.statusIntervalSeconds,
      1,
      3600,
    ),
    leaseName: str('leaseName', SETTINGS_DEFAULTS.leaseName),
    nativeAuditSinks: nativeMode === 'off' ? 'off' : 'auto',
    nativeKeyFile: optionalStr('nativeKeyFile'),
    metricsAuthAllowTtlSeconds: int(
      'metricsAuthAllowTtlSeconds',
      SETTINGS_DEFAULTS.metricsAuthAllowTtlSeconds,
      0,
      3600,
    ),
    metricsAuthDenyTtlSeconds: int(
      'metricsAuthDenyTtlSeconds',
      SETTINGS_DEFAULTS.metricsAuthDenyTtlSeconds,
      0,
      3600,
    ),
  };
  if (settings.advertiseUrl !== undefined && !isHttpUrl(settings.advertiseUrl)) {
    problems.push(
      `advertiseUrl: expected an http(s) URL without path, query or credentials, got ${JSON.stringify(settings.advertiseUrl)}`,
    );
  }
  if (
    settings.shutdownDelaySeconds > 0 &&
    settings.shutdownDelaySeconds >= settings.shutdownGraceSeconds
  ) {
    problems.push(
      `shutdownDelaySeconds: must be less than shutdownGraceSeconds (${settings.shutdownGraceSeconds}), which it is part of, got ${settings.shutdownDelaySeconds}`,
    );
  }
  const namespaceFields: [string, readonly string[]][] = [
    ['namespace', [namespace]],
    ['clusterWideNamespaces', settings.clusterWideNamespaces],
  ];
  for (const [field, names] of namespaceFields) {
    for (const name of names) {
      if (!DNS1123_LABEL.test(name)) {
        problems.push(
          `${field}: ${JSON.stringify(name)} is not a namespace name (a lowercase RFC 1123 label)`,
        );
      }
    }
  }
  if (options.receiver) checkReceiver(settings, problems);
  if (problems.length > 0) throw new SettingsError(problems);
  return Object.freeze({
    ...settings,
    listen: Object.freeze({ ...settings.listen }),
    tokenFiles: Object.freeze([...settings.tokenFiles]),
    clusterWideNamespaces: Object.freeze([...settings.clusterWideNamespaces]),
  });
}

// Receivers authenticate and encrypt unless explicitly insecure, and then only on loopback.
function checkReceiver(settings: Settings, problems: string[]): void {
  if (settings.insecure && !isLoopbackHost(settings.listen.host)) {
    problems.push(
      `insecure: plain HTTP without authentication is refused on ${settings.listen.host}: listen on a loopback address`,
    );
  }
  if (
    settings.insecure &&
    (settings.tlsCertFile !== undefined || settings.tlsKeyFile !== undefined)
  ) {
    problems.push('insecure: give TLS files or insecure, not both');
  }
  if (
    !settings.insecure &&
    (settings.tlsCertFile === undefined) !== (settings.tlsKeyFile === undefined)
  ) {
    problems.push('tlsCertFile, tlsKeyFile: give both or neither');
  }
  if (!settings.insecure && settings.tlsCertFile === undefined) {
    problems.push('tlsCertFile: Required value: the receiver serves HTTPS unless insecure is set');
  }
  if (
    !settings.insecure &&
    settings.tokenFiles.length === 0 &&
    settings.clientCAFile === undefined
  ) {
    problems.push(
      'tokenFiles: Required value: receivers authenticate; give token files or a client CA',
    );
  }
}

function isHttpUrl(text: string): boolean {
  try {
    const url = new URL(text);
    return (
      (url.protocol === 'https:' || url.protocol === 'http:') &&
      url.username === '' &&
      url.password === '' &&
      (url.pathname === '/' || url.pathname === '') &&
      url.search === '' &&
      url.hash === ''
    );
  } catch {
    return false;
  }
}

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

function parseListen(text: string, problems: string[]): { host: string; port: number } {
  const m = /^(\[[^\]]+\]|[^:]+):(\d{1,5})$/.exec(text);
  const port = Number(m?.[2]);
  if (m === null || port > 65_535) {
    problems.push(`listen: expected host:port, e.g. 127.0.0.1:8443, got ${JSON.stringify(text)}`);
    return { host: '127.0.0.1', port: 8443 };
  }
  return { host: (m[1] as string).replace(/^\[|\]$/g, ''), port };
}
