// The operator settings schema: pinned defaults, one error per bad field (all reported at once),
// listen addresses, TLS and authentication requirements, environment-variable strings, and a frozen
// result. Pure: starts no process.
import { describe, expect, it } from 'vitest';
import {
  SETTINGS_DEFAULTS,
  type Settings,
  SettingsError,
  type SettingsInput,
  validateSettings,
} from '../../../src/config/settings.ts';

/** The smallest secure configuration: a serving certificate and bearer tokens. */
const SECURE: SettingsInput = {
  tlsCertFile: '/etc/kube-audit/tls.crt',
  tlsKeyFile: '/etc/kube-audit/tls.key',
  tokenFiles: ['/etc/kube-audit/tokens'],
};

function problems(input: SettingsInput): readonly string[] {
  try {
    validateSettings(input);
  } catch (err) {
    if (err instanceof SettingsError) return err.problems;
    throw err;
  }
  throw new Error(`expected ${JSON.stringify(input)} to be refused`);
}

/** Settings under which only `field` can be wrong: insecure, or (for insecure itself) TLS given. */
function quiet(field: keyof SettingsInput): SettingsInput {
  return field === 'insecure' ? SECURE : { insecure: true };
}

describe('settings defaults', () => {
  it('pins every default of SETTINGS_DEFAULTS', () => {
    expect({ ...SETTINGS_DEFAULTS }).toEqual({
      listen: '127.0.0.1:8443',
      insecure: false,
      dataDir: './kube-audit-data',
      spoolMaxBytes: 1_073_741_824,
      deadLetterMaxBytes: 67_108_864,
      namespace: 'kube-audit',
      allowSecretPayloads: false,
      shutdownGraceSeconds: 25,
      shutdownDelaySeconds: 0,
      maxRequestsPerConnection: 100,
      maxConnectionAgeSeconds: 60,
      influxdbMaxRequestsPerServer: 128,
      logLevel: 'info',
      statusIntervalSeconds: 5,
      leaseName: 'kube-audit-operator',
      nativeAuditSinks: 'auto',
      metricsAuthAllowTtlSeconds: 60,
      metricsAuthDenyTtlSeconds: 10,
    });
    expect(Object.isFrozen(SETTINGS_DEFAULTS)).toBe(true);
  });

  it('fills every field from the defaults when only insecure is given', () => {
    expect(validateSettings({ insecure: true })).toEqual({
      listen: { host: '127.0.0.1', port: 8443 },
      insecure: true,
      tlsCertFile: undefined,
      tlsKeyFile: undefined,
      clientCAFile: undefined,
      tokenFiles: [],
      dataDir: './kube-audit-data',
      spoolMaxBytes: 1024 ** 3,
      namespace: 'kube-audit',
      clusterWideNamespaces: ['kube-audit'],
      allowSecretPayloads: false,
      shutdownGraceSeconds: 25,
      shutdownDelaySeconds: 0,
      maxRequestsPerConnection: 100,
      maxConnectionAgeSeconds: 60,
      influxdbMaxRequestsPerServer: 128,
      logLevel: 'info',
      kubeconfig: undefined,
      advertiseUrl: undefined,
      statusIntervalSeconds: 5,
      leaseName: 'kube-audit-operator',
      nativeAuditSinks: 'auto',
      nativeKeyFile: undefined,
      metricsAuthAllowTtlSeconds: 60,
      metricsAuthDenyTtlSeconds: 10,
      deadLetterMaxBytes: 64 * 1024 * 1024,
    } satisfies Settings);
  });

  it('makes the operator namespace cluster-wide unless told otherwise', () => {
    expect(validateSettings({ insecure: true, namespace: 'audit' }).clusterWideNamespaces).toEqual([
      'audit',
    ]);
  });

  it('refuses the bare defaults: the receiver needs TLS and authentication', () => {
    expect(problems({})).toEqual([
      'tlsCertFile: Required value: the receiver serves HTTPS unless insecure is set',
      'tokenFiles: Required value: receivers authenticate; give token files or a client CA',
    ]);
  });
});

describe('settings errors', () => {
  // Each bad value alone, with insecure on (or TLS given, for insecure itself) so the TLS
  // requirements stay quiet.
  it.each([
    ['listen', 'nope'],
    ['listen', 8443],
    ['listen', ''],
    ['insecure', 'yes'],
    ['insecure', 1],
    ['tlsCertFile', ''],
    ['tlsCertFile', 7],
    ['tlsKeyFile', ''],
    ['clientCAFile', false],
    ['tokenFiles', 'a,,b'],
    ['tokenFiles', [1]],
    ['tokenFiles', 5],
    ['dataDir', ''],
    ['dataDir', 3],
    ['spoolMaxBytes', 1000],
    ['spoolMaxBytes', -1],
    ['spoolMaxBytes', 1024 * 1024 + 0.5],
    ['spoolMaxBytes', '1GiB'],
    ['spoolMaxBytes', 2 ** 51],
    ['namespace', ''],
    ['clusterWideNamespaces', ','],
    ['clusterWideNamespaces', ['']],
    ['allowSecretPayloads', 'maybe'],
    ['shutdownGraceSeconds', -1],
    ['shutdownGraceSeconds', 3601],
    ['shutdownGraceSeconds', '25s'],
    ['shutdownDelaySeconds', -1],
    ['shutdownDelaySeconds', '5s'],
    ['shutdownDelaySeconds', 25],
    ['maxRequestsPerConnection', -1],
    ['maxRequestsPerConnection', 1.5],
    ['maxRequestsPerConnection', 1_000_001],
    ['maxConnectionAgeSeconds', -1],
    ['maxConnectionAgeSeconds', '60s'],
    ['maxConnectionAgeSeconds', 86_401],
    ['influxdbMaxRequestsPerServer', 0],
    ['influxdbMaxRequestsPerServer', 100_001],
    ['influxdbMaxRequestsPerServer', '64k'],
    ['metricsAuthAllowTtlSeconds', -1],
    ['metricsAuthAllowTtlSeconds', '1m'],
    ['metricsAuthDenyTtlSeconds', 3601],
    ['metricsAuthDenyTtlSeconds', 0.5],
    ['logLevel', 'verbose'],
    ['logLevel', 3],
  ] as const)('names %s when it is %j', (field, value) => {
    const found = problems({ ...quiet(field), [field]: value });
    expect(found).toHaveLength(1);
    expect(found[0]).toMatch(new RegExp(`^${field}: `));
  });

  it('reports every bad field at once, in one SettingsError', () => {
    let error: unknown;
    try {
      validateSettings({
        listen: 'localhost',
        spoolMaxBytes: 1,
        logLevel: 'loud',
        shutdownGraceSeconds: 'soon',
        tlsKeyFile: '/tls.key',
      });
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(SettingsError);
    const settingsError = error as SettingsError;
    expect(settingsError.code).toBe('INVALID_SETTINGS');
    expect(settingsError.problems.map((p) => p.split(':')[0])).toEqual([
      'listen',
      'logLevel',
      'spoolMaxBytes',
      'shutdownGraceSeconds',
      'tlsCertFile, tlsKeyFile',
      'tlsCertFile',
      'tokenFiles',
    ]);
    for (const problem of settingsError.problems) expect(settingsError.message).toContain(problem);
  });
});

describe('listen', () => {
  it.each([
    ['127.0.0.1:8443', '127.0.0.1', 8443],
    ['[::1]:9000', '::1', 9000],
    ['0.0.0.0:443', '0.0.0.0', 443],
    ['[::]:8443', '::', 8443],
    ['localhost:8080', 'localhost', 8080],
    ['audit.example.com:65535', 'audit.example.com', 65535],
  ] as const)('reads %s as host %s, port %d', (listen, host, port) => {
    expect(validateSettings({ ...SECURE, listen }).listen).toEqual({ host, port });
  });

  it.each([
    '8443',
    '127.0.0.1',
    '127.0.0.1:',
    ':8443',
    '127.0.0.1:65536',
    '127.0.0.1:123456',
    '127.0.0.1:port',
    '127.0.0.1:-1',
    '::1:9000',
    '[::1]',
    '[::1:9000',
    '127.0.0.1:8443/audit',
    'https://127.0.0.1:8443',
  ])('refuses %j, naming listen', (listen) => {
    expect(problems({ ...SECURE, listen })).toEqual([
      `listen: expected host:port, e.g. 127.0.0.1:8443, got ${JSON.stringify(listen)}`,
    ]);
  });
});

describe('TLS and authentication', () => {
  it('accepts a certificate, its key and token files', () => {
    const settings = validateSettings(SECURE);
    expect(settings).toMatchObject({
      insecure: false,
      tlsCertFile: '/etc/kube-audit/tls.crt',
      tlsKeyFile: '/etc/kube-audit/tls.key',
      tokenFiles: ['/etc/kube-audit/tokens'],
    });
  });

  it('accepts a client CA in place of token files', () => {
    const { tokenFiles: _, ...tls } = SECURE;
    const settings = validateSettings({ ...tls, clientCAFile: '/etc/kube-audit/ca.crt' });
    expect(settings.clientCAFile).toBe('/etc/kube-audit/ca.crt');
    expect(settings.tokenFiles).toEqual([]);
  });

  it('refuses a certificate without its key', () => {
    expect(problems({ ...SECURE, tlsKeyFile: undefined })).toEqual([
      'tlsCertFile, tlsKeyFile: give both or neither',
    ]);
  });

  it('refuses a key without its certificate, naming both fields', () => {
    expect(problems({ ...SECURE, tlsCertFile: undefined })).toEqual([
      'tlsCertFile, tlsKeyFile: give both or neither',
      'tlsCertFile: Required value: the receiver serves HTTPS unless insecure is set',
    ]);
  });

  it('refuses to serve without TLS unless insecure is set', () => {
    expect(problems({ tokenFiles: ['/tokens'] })).toEqual([
      'tlsCertFile: Required value: the receiver serves HTTPS unless insecure is set',
    ]);
  });

  it('refuses TLS without token files or a client CA unless insecure is set', () => {
    expect(problems({ ...SECURE, tokenFiles: undefined })).toEqual([
      'tokenFiles: Required value: receivers authenticate; give token files or a client CA',
    ]);
  });

  it('needs neither TLS nor authentication when insecure on loopback', () => {
    expect(validateSettings({ insecure: true, listen: '127.0.0.1:8080' }).insecure).toBe(true);
    expect(validateSettings({ insecure: true, listen: '[::1]:8080' }).insecure).toBe(true);
  });

  it.each(['0.0.0.0:8443', '[::]:8443', '10.0.0.5:8443'])(
    'refuses insecure on the non-loopback address %s, naming insecure',
    (listen) => {
      expect(problems({ insecure: true, listen }).some((p) => p.startsWith('insecure: '))).toBe(
        true,
      );
    },
  );

  it('refuses TLS files together with insecure', () => {
    expect(
      problems({ ...SECURE, insecure: true }).some((p) => /^(insecure|tlsCertFile)/.test(p)),
    ).toBe(true);
  });
});

describe('values as environment variables give them', () => {
  it("reads 'true' and 'false' as booleans", () => {
    const settings = validateSettings({
      insecure: 'true',
      allowSecretPayloads: 'true',
    });
    expect(settings.insecure).toBe(true);
    expect(settings.allowSecretPayloads).toBe(true);
    expect(validateSettings({ ...SECURE, insecure: 'false' }).insecure).toBe(false);
  });

  it('reads numeric strings as integers', () => {
    const settings = validateSettings({
      insecure: 'true',
      spoolMaxBytes: '2097152',
      shutdownGraceSeconds: '0',
    });
    expect(settings.spoolMaxBytes).toBe(2_097_152);
    expect(settings.shutdownGraceSeconds).toBe(0);
  });

  it('takes a shutdown delay shorter than the grace period it is part of, and refuses one as long', () => {
    expect(
      validateSettings({ insecure: true, shutdownDelaySeconds: '5' }).shutdownDelaySeconds,
    ).toBe(5);
    expect(validateSettings({ insecure: true, shutdownGraceSeconds: 0 }).shutdownDelaySeconds).toBe(
      0,
    );
    expect(
      problems({ insecure: true, shutdownGraceSeconds: 10, shutdownDelaySeconds: 10 }),
    ).toEqual([
      'shutdownDelaySeconds: must be less than shutdownGraceSeconds (10), which it is part of, got 10',
    ]);
  });

  it('takes 0 as "no limit" for the connection limits and "no cache" for the /metrics decisions', () => {
    const settings = validateSettings({
      insecure: true,
      maxRequestsPerConnection: '0',
      maxConnectionAgeSeconds: '0',
      metricsAuthAllowTtlSeconds: '0',
      metricsAuthDenyTtlSeconds: '0',
    });
    expect(settings).toMatchObject({
      maxRequestsPerConnection: 0,
      maxConnectionAgeSeconds: 0,
      metricsAuthAllowTtlSeconds: 0,
      metricsAuthDenyTtlSeconds: 0,
    });
  });

  it('splits comma-separated lists and trims the names', () => {
    const settings = validateSettings({
      ...SECURE,
      tokenFiles: '/etc/a.tokens, /etc/b.tokens',
      clusterWideNamespaces: 'kube-audit,platform',
    });
    expect(settings.tokenFiles).toEqual(['/etc/a.tokens', '/etc/b.tokens']);
    expect(settings.clusterWideNamespaces).toEqual(['kube-audit', 'platform']);
  });

  it.each([
    ['insecure', 'yes'],
    ['insecure', '1'],
    ['spoolMaxBytes', '2e6'],
    ['spoolMaxBytes', ' 2097152'],
    ['shutdownGraceSeconds', '-5'],
    ['shutdownGraceSeconds', '2.5'],
  ] as const)('refuses %s as %j rather than guessing', (field, value) => {
    const found = problems({ ...quiet(field), [field]: value });
    expect(found).toEqual([
      expect.stringMatching(new RegExp(`^${field}: .*${JSON.stringify(value)}`)),
    ]);
  });

  // Gap: names that can never be a namespace are accepted, so the setting silently matches nothing.
  it.each([
    ['namespace', 'Kube Audit'],
    ['clusterWideNamespaces', 'kube-audit,Platform_Team'],
  ] as const)('refuses %s %j, which is not a namespace name', (field, value) => {
    expect(
      problems({ insecure: true, [field]: value }).some((p) => p.startsWith(`${field}: `)),
    ).toBe(true);
  });
});

describe('the validated settings', () => {
  it('are frozen', () => {
    const settings = validateSettings({ insecure: true });
    expect(Object.isFrozen(settings)).toBe(true);
    expect(() => {
      (settings as { insecure: boolean }).insecure = false;
    }).toThrow(TypeError);
  });

  it('are frozen all the way down, and do not share arrays with the input', () => {
    const tokenFiles = ['/etc/kube-audit/tokens'];
    const settings = validateSettings({ ...SECURE, tokenFiles });
    tokenFiles.push('/tmp/attacker.tokens');
    expect(settings.tokenFiles).toEqual(['/etc/kube-audit/tokens']);
    expect(Object.isFrozen(settings.listen)).toBe(true);
    expect(Object.isFrozen(settings.tokenFiles)).toBe(true);
    expect(Object.isFrozen(settings.clusterWideNamespaces)).toBe(true);
  });

  it('leave the input untouched', () => {
    const input: SettingsInput = { insecure: 'true', spoolMaxBytes: '2097152' };
    validateSettings(input);
    expect(input).toEqual({ insecure: 'true', spoolMaxBytes: '2097152' });
  });
});
