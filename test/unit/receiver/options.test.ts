// Validation of the receiver settings: defaults, every bad field named, the loopback rule for
// insecure mode. Pure: starts no process.
import { describe, expect, it } from 'vitest';
import { DEFAULT_PARSE_LIMITS } from '../../../src/audit/parse.ts';
import { Registry } from 'prom-client';
import { ReceiverOptionsError } from '../../../src/receiver/errors.ts';
import { isLoopbackHost } from '../../../src/config/loopback.ts';
import {
  RECEIVER_DEFAULTS,
  type ReceiverOptions,
  validateReceiverOptions,
} from '../../../src/receiver/options.ts';
import { startReceiver } from '../../../src/receiver/server.ts';

const TLS = { certFile: '/etc/receiver/tls.crt', keyFile: '/etc/receiver/tls.key' };
const tokens = () => new Set(['t']);
const valid = { host: '0.0.0.0', port: 8443, tls: TLS, tokens };

function problemsOf(input: unknown): readonly string[] {
  try {
    validateReceiverOptions(input);
  } catch (err) {
    if (err instanceof ReceiverOptionsError) {
      expect(err.code).toBe('INVALID_RECEIVER_OPTIONS');
      return err.problems;
    }
    throw err;
  }
  throw new Error('expected the options to be rejected');
}

describe('receiver option defaults', () => {
  it('pins the defaults: authenticated HTTPS, a 100 MiB body limit, the parser limits, connections closed after 100 requests or 60 s', () => {
    expect(RECEIVER_DEFAULTS).toEqual({
      insecure: false,
      bodyLimitBytes: 104_857_600,
      parseLimits: DEFAULT_PARSE_LIMITS,
      certificateCheckIntervalMs: 10_000,
      maxRequestsPerConnection: 100,
      maxConnectionAgeMs: 60_000,
    });
    // 400 events, the apiserver's default batch size, of 256 KiB.
    expect(RECEIVER_DEFAULTS.bodyLimitBytes).toBe(400 * 256 * 1024);
  });

  it('fills in the defaults and is ready unless told otherwise', () => {
    const options = validateReceiverOptions(valid);
    expect(options).toMatchObject({
      host: '0.0.0.0',
      port: 8443,
      tls: TLS,
      insecure: false,
      bodyLimitBytes: 104_857_600,
      parseLimits: DEFAULT_PARSE_LIMITS,
      certificateCheckIntervalMs: 10_000,
      maxRequestsPerConnection: 100,
      maxConnectionAgeMs: 60_000,
    });
    expect(options.readiness()).toBe(true);
    expect(options.log).toBeUndefined();
    // Without a review, /metrics takes the audit endpoints' credentials.
    expect(options.metricsAccess).toBeUndefined();
  });

  it('returns a frozen result, nested objects included', () => {
    const options = validateReceiverOptions({ ...valid, parseLimits: { maxEvents: 5 } });
    expect(Object.isFrozen(options)).toBe(true);
    expect(Object.isFrozen(options.tls)).toBe(true);
    expect(Object.isFrozen(options.parseLimits)).toBe(true);
    expect(options.parseLimits).toEqual({ maxEvents: 5, maxDepth: DEFAULT_PARSE_LIMITS.maxDepth });
  });

  it('accepts its own result again unchanged', () => {
    const options = validateReceiverOptions({ ...valid, log: () => undefined });
    expect(validateReceiverOptions(options)).toEqual(options);
  });

  it('does not keep a reference to the caller’s tls object', () => {
    const tls = { ...TLS };
    const options = validateReceiverOptions({ ...valid, tls });
    tls.certFile = '/elsewhere';
    expect(options.tls?.certFile).toBe(TLS.certFile);
  });
});

describe('receiver option errors', () => {
  it('names every bad field in one error', () => {
    const problems = problemsOf({
      host: '',
      port: 70_000,
      tls: { certFile: 3, keyFile: '' },
      tokens: 'secret',
      bodyLimitBytes: -1,
      parseLimits: { maxEvents: 0, maxDepth: 1.5 },
      readiness: true,
      certificateCheckIntervalMs: 'often',
      log: 'stdout',
      metricsAccess: 'prometheus',
      maxRequestsPerConnection: -1,
      maxConnectionAgeMs: 2 ** 31,
    });
    expect(problems.map((p) => p.slice(0, p.indexOf(':')))).toEqual([
      'host',
      'port',
      'tls.certFile',
      'tls.keyFile',
      'tokens',
      'bodyLimitBytes',
      'parseLimits.maxEvents',
      'parseLimits.maxDepth',
      'readiness',
      'certificateCheckIntervalMs',
      'log',
      'metricsAccess',
      'maxRequestsPerConnection',
      'maxConnectionAgeMs',
    ]);
  });

  it('never repeats a token in an error', () => {
    const problems = problemsOf({ ...valid, tokens: 'super-secret-token' });
    expect(problems.join('\n')).toContain('tokens: expected a function');
  });

  it('rejects unknown fields, so a misspelt setting is not silently ignored', () => {
    expect(problemsOf({ ...valid, bodyLimit: 10, tls: { ...TLS, caFile: 'x' } })).toEqual([
      'bodyLimit: unknown field',
      'tls.caFile: unknown field',
    ]);
  });

  it('rejects what is not an object', () => {
    expect(problemsOf(null)).toEqual(['expected an object']);
    expect(problemsOf([valid])).toEqual(['expected an object']);
  });

  it('requires a certificate unless insecure', () => {
    expect(problemsOf({ host: '0.0.0.0', port: 8443, tokens })).toEqual([
      'tls: Required value: a certificate and key (or insecure: true on a loopback address)',
    ]);
  });

  it('rejects a certificate together with insecure', () => {
    expect(problemsOf({ host: '127.0.0.1', port: 0, insecure: true, tls: TLS })).toEqual([
      'tls: must not be set when insecure is true',
    ]);
  });

  it('requires tokens unless a client CA admits certificates', () => {
    expect(problemsOf({ host: '0.0.0.0', port: 8443, tls: TLS })).toEqual([
      'tokens: Required value: bearer tokens, unless tls.clientCAFile admits client certificates',
    ]);
    const mtlsOnly = validateReceiverOptions({
      host: '0.0.0.0',
      port: 8443,
      tls: { ...TLS, clientCAFile: '/etc/receiver/ca.crt' },
    });
    expect(mtlsOnly.tokens().size).toBe(0);
  });

  it.each([
    '0.0.0.0',
    '::',
    '10.0.0.1',
    '192.168.1.20',
    '8.8.8.8',
    'example.com',
    '127.0.0.1.nip.io',
  ])('rejects insecure mode on the non-loopback host %j', (host) => {
    expect(problemsOf({ host, port: 8080, insecure: true })).toEqual([
      `insecure: allowed only on a loopback address (127.0.0.0/8, ::1, localhost), not ${JSON.stringify(host)}`,
    ]);
  });

  it.each(['127.0.0.1', '127.1.2.3', '::1', 'localhost', '::ffff:127.0.0.1'])(
    'allows insecure mode on the loopback host %j, with no certificate or token',
    (host) => {
      const options = validateReceiverOptions({ host, port: 8080, insecure: true });
      expect(options.insecure).toBe(true);
      expect(options.tls).toBeUndefined();
    },
  );

  it('accepts port 0 (a free port) and rejects fractions and negatives', () => {
    expect(validateReceiverOptions({ ...valid, port: 0 }).port).toBe(0);
    expect(problemsOf({ ...valid, port: 1.5 })).toEqual([
      'port: expected an integer from 0 to 65535, got number 1.5',
    ]);
    expect(problemsOf({ ...valid, port: -1 })).toHaveLength(1);
  });

  it.each([
    ['maxRequestsPerConnection', 1.5],
    ['maxRequestsPerConnection', '100'],
    ['maxConnectionAgeMs', -1],
    ['maxConnectionAgeMs', Number.POSITIVE_INFINITY],
  ] as const)('rejects %s %j, naming it and saying 0 means no limit', (field, value) => {
    const problems = problemsOf({ ...valid, [field]: value });
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(
      new RegExp(`^${field}: expected a non-negative integer.*0: no limit`),
    );
  });

  it('accepts 0 to turn each connection limit off', () => {
    expect(
      validateReceiverOptions({ ...valid, maxRequestsPerConnection: 0, maxConnectionAgeMs: 0 }),
    ).toMatchObject({ maxRequestsPerConnection: 0, maxConnectionAgeMs: 0 });
  });

  it('accepts 0 to turn certificate file checks off', () => {
    expect(validateReceiverOptions({ ...valid, certificateCheckIntervalMs: 0 })).toMatchObject({
      certificateCheckIntervalMs: 0,
    });
  });
});

describe('startReceiver', () => {
  it('validates again, so a hand-built insecure object on a public address never listens', async () => {
    const handBuilt = {
      ...validateReceiverOptions({ host: '127.0.0.1', port: 0, insecure: true }),
      host: '0.0.0.0',
    } satisfies ReceiverOptions;
    const ingest = { ingest: () => Promise.reject(new Error('unused')), hasSink: () => false };
    await expect(startReceiver(handBuilt, ingest, new Registry())).rejects.toThrow(
      ReceiverOptionsError,
    );
  });
});

describe('isLoopbackHost', () => {
  it.each([
    ['127.0.0.1', true],
    ['127.255.255.254', true],
    ['::1', true],
    ['localhost', true],
    ['::ffff:127.0.0.1', true],
    ['128.0.0.1', false],
    ['0.0.0.0', false],
    ['::', false],
    ['::2', false],
    ['LOCALHOST.example', false],
    ['', false],
  ])('says %j is loopback: %s', (host, expected) => {
    expect(isLoopbackHost(host)).toBe(expected);
  });
});
