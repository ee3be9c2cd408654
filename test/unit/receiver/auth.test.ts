// Authentication and authorisation decisions for bearer tokens and client certificates, as tables:
// the receiver-wide credentials, and each sink's own tokens on its own endpoints (ADR 0018). Pure:
// starts no process (real TLS handshakes are in test/integration/receiver/tls.test.ts, the sinks'
// tokens against the real receiver in test/e2e/standalone.test.ts and with the operator in
// test/e2e/controlplane/security.test.ts).
import { Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import {
  type AuthResult,
  type AuthTarget,
  authorize,
  type ClientCertificateState,
  clientCertificateState,
  type Credentials,
  TokenDigests,
} from '../../../src/receiver/auth.ts';
import { RECEIVER_ERRORS } from '../../../src/receiver/errors.ts';

const TOKENS: ReadonlySet<string> = new Set(['alpha-token', 'beta-token']);

const cases: [string, string | undefined, ClientCertificateState, AuthResult][] = [
  ['a listed bearer token', 'Bearer alpha-token', 'none', { ok: true, via: 'token' }],
  ['another listed token', 'Bearer beta-token', 'none', { ok: true, via: 'token' }],
  ['the scheme in any case', 'BEARER alpha-token', 'none', { ok: true, via: 'token' }],
  ['trailing blanks', 'Bearer alpha-token  ', 'none', { ok: true, via: 'token' }],
  ['a verified certificate alone', undefined, 'verified', { ok: true, via: 'certificate' }],
  [
    'a verified certificate and a wrong token',
    'Bearer x',
    'verified',
    { ok: true, via: 'certificate' },
  ],
  [
    'a valid token and an untrusted certificate',
    'Bearer alpha-token',
    'rejected',
    { ok: true, via: 'token' },
  ],
  ['no credentials', undefined, 'none', { ok: false, code: 'UNAUTHENTICATED' }],
  ['another scheme', 'Basic YWxwaGE6dG9rZW4=', 'none', { ok: false, code: 'UNAUTHENTICATED' }],
  ['an empty bearer token', 'Bearer ', 'none', { ok: false, code: 'UNAUTHENTICATED' }],
  ['two tokens', 'Bearer alpha-token beta-token', 'none', { ok: false, code: 'UNAUTHENTICATED' }],
  ['a token prefix', 'Bearer alpha', 'none', { ok: false, code: 'INVALID_TOKEN' }],
  ['two quotes as a token', 'Bearer ""', 'none', { ok: false, code: 'INVALID_TOKEN' }],
  ['a token with a suffix', 'Bearer alpha-token2', 'none', { ok: false, code: 'INVALID_TOKEN' }],
  ['a token in the wrong case', 'Bearer ALPHA-TOKEN', 'none', { ok: false, code: 'INVALID_TOKEN' }],
  [
    'a wrong token and an untrusted certificate',
    'Bearer x',
    'rejected',
    { ok: false, code: 'INVALID_TOKEN' },
  ],
  [
    'an untrusted certificate alone',
    undefined,
    'rejected',
    { ok: false, code: 'UNTRUSTED_CLIENT_CERTIFICATE' },
  ],
];

/** The receiver-wide credentials alone, on the fan-in endpoint. */
function authenticate(
  authorization: string | undefined,
  certificate: ClientCertificateState,
  tokens: ReadonlySet<string>,
): AuthResult {
  return authorize(
    authorization,
    certificate,
    { kind: 'all' },
    { receiverTokens: tokens, sinkTokens: new Map() },
  );
}

describe('authorize: the receiver-wide credentials', () => {
  it.each(cases)('decides on %s', (_name, authorization, certificate, expected) => {
    expect(authenticate(authorization, certificate, TOKENS)).toEqual(expected);
  });

  it('accepts no token at all when none is configured, not even an empty one', () => {
    expect(authenticate('Bearer ', 'none', new Set(['']))).toEqual({
      ok: false,
      code: 'UNAUTHENTICATED',
    });
    expect(authenticate('Bearer x', 'none', new Set())).toEqual({
      ok: false,
      code: 'INVALID_TOKEN',
    });
  });
});

// The apiserver's token works everywhere; team A's and team B's pipelines each accept their own
// (B has two during a rotation); the cluster-wide AuditSink accepts its own.
const SINK_A = 'AuditPipeline/team-a/trail';
const SINK_B = 'AuditPipeline/team-b/trail';
const SINK_CLUSTER = 'AuditSink/everything';
const CREDENTIALS: Credentials = {
  receiverTokens: new Set(['apiserver-token']),
  sinkTokens: new Map([
    [SINK_A, TokenDigests.of(['team-a-token'])],
    [SINK_B, TokenDigests.of(['team-b-old', 'team-b-new'])],
    [SINK_CLUSTER, TokenDigests.of(['cluster-sink-token'])],
  ]),
};
const FAN_IN: AuthTarget = { kind: 'all' };
const A: AuthTarget = { kind: 'sink', key: SINK_A };
const B: AuthTarget = { kind: 'sink', key: SINK_B };
const CLUSTER: AuthTarget = { kind: 'sink', key: SINK_CLUSTER };
// A pipeline that names no token Secret, or whose Secret is missing: no entry at all.
const UNCONFIGURED: AuthTarget = { kind: 'sink', key: 'AuditPipeline/team-c/trail' };

const bearer = (token: string) => `Bearer ${token}`;

// credential × endpoint → HTTP status, as the receiver answers (RECEIVER_ERRORS).
const matrix: [string, string | undefined, ClientCertificateState, AuthTarget, number][] = [
  ['the apiserver token, fan-in', bearer('apiserver-token'), 'none', FAN_IN, 200],
  ["the apiserver token, A's endpoint", bearer('apiserver-token'), 'none', A, 200],
  ["the apiserver token, B's endpoint", bearer('apiserver-token'), 'none', B, 200],
  [
    'the apiserver token, an unconfigured sink',
    bearer('apiserver-token'),
    'none',
    UNCONFIGURED,
    200,
  ],
  ['a verified certificate, fan-in', undefined, 'verified', FAN_IN, 200],
  ["a verified certificate, A's endpoint", undefined, 'verified', A, 200],
  ["A's token, A's endpoint", bearer('team-a-token'), 'none', A, 200],
  ["A's token, B's endpoint", bearer('team-a-token'), 'none', B, 403],
  ["A's token, the AuditSink's endpoint", bearer('team-a-token'), 'none', CLUSTER, 403],
  ["A's token, fan-in", bearer('team-a-token'), 'none', FAN_IN, 403],
  ["A's token, an unconfigured sink", bearer('team-a-token'), 'none', UNCONFIGURED, 403],
  [
    "A's token with an untrusted certificate, A's endpoint",
    bearer('team-a-token'),
    'rejected',
    A,
    200,
  ],
  [
    "A's token with an untrusted certificate, B's endpoint",
    bearer('team-a-token'),
    'rejected',
    B,
    403,
  ],
  ["B's old token during a rotation, B's endpoint", bearer('team-b-old'), 'none', B, 200],
  ["B's new token during a rotation, B's endpoint", bearer('team-b-new'), 'none', B, 200],
  ["B's new token, A's endpoint", bearer('team-b-new'), 'none', A, 403],
  ["the AuditSink's token, its endpoint", bearer('cluster-sink-token'), 'none', CLUSTER, 200],
  [
    "the AuditSink's token, fan-in (it sees every namespace, yet writes only its own)",
    bearer('cluster-sink-token'),
    'none',
    FAN_IN,
    403,
  ],
  ["the AuditSink's token, A's endpoint", bearer('cluster-sink-token'), 'none', A, 403],
  ['an unknown token, fan-in', bearer('nobody'), 'none', FAN_IN, 401],
  ["an unknown token, A's endpoint", bearer('nobody'), 'none', A, 401],
  ["a prefix of A's token, A's endpoint", bearer('team-a'), 'none', A, 401],
  ["A's token in the wrong case, A's endpoint", bearer('TEAM-A-TOKEN'), 'none', A, 401],
  ["no credentials, A's endpoint", undefined, 'none', A, 401],
  ['no credentials, fan-in', undefined, 'none', FAN_IN, 401],
  ["an untrusted certificate alone, A's endpoint", undefined, 'rejected', A, 403],
];

describe('authorize: credential × endpoint', () => {
  it.each(matrix)('answers %s with %i', (_name, authorization, certificate, target, status) => {
    const result = authorize(authorization, certificate, target, CREDENTIALS);
    expect(result.ok ? 200 : RECEIVER_ERRORS[result.code].statusCode).toBe(status);
  });

  it('says which credential admitted a request, and names no sink when it refuses one', () => {
    expect(authorize(bearer('team-a-token'), 'none', A, CREDENTIALS)).toEqual({
      ok: true,
      via: 'sink-token',
    });
    expect(authorize(bearer('apiserver-token'), 'none', A, CREDENTIALS)).toEqual({
      ok: true,
      via: 'token',
    });
    expect(authorize(bearer('team-a-token'), 'none', B, CREDENTIALS)).toEqual({
      ok: false,
      code: 'ENDPOINT_FORBIDDEN',
    });
  });

  it('lets a token that is both receiver-wide and a sink token write everywhere', () => {
    const shared: Credentials = {
      receiverTokens: new Set(['same']),
      sinkTokens: new Map([[SINK_A, TokenDigests.of(['same'])]]),
    };
    expect(authorize(bearer('same'), 'none', B, shared)).toEqual({ ok: true, via: 'token' });
  });

  it('lets a token that two sinks name write to both of them, and to no third', () => {
    const shared: Credentials = {
      receiverTokens: new Set(),
      sinkTokens: new Map([
        [SINK_A, TokenDigests.of(['shared'])],
        [SINK_B, TokenDigests.of(['shared'])],
      ]),
    };
    expect(authorize(bearer('shared'), 'none', A, shared).ok).toBe(true);
    expect(authorize(bearer('shared'), 'none', B, shared).ok).toBe(true);
    expect(authorize(bearer('shared'), 'none', CLUSTER, shared)).toEqual({
      ok: false,
      code: 'ENDPOINT_FORBIDDEN',
    });
  });
});

describe('TokenDigests', () => {
  it('keeps each distinct non-empty token once', () => {
    expect(TokenDigests.of(['a', 'a', '', 'b']).size).toBe(2);
  });

  it('never accepts an empty token', () => {
    expect(TokenDigests.of(['']).size).toBe(0);
  });
});

describe('clientCertificateState', () => {
  it('finds no certificate on a plain TCP socket', () => {
    expect(clientCertificateState(new Socket())).toBe('none');
  });
});
