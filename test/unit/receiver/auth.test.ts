// Authentication decisions for bearer tokens and client certificates, as a table. Pure: starts no
// process (real TLS handshakes are in test/integration/receiver/tls.test.ts).
import { Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import {
  type AuthResult,
  authenticate,
  type ClientCertificateState,
  clientCertificateState,
} from '../../../src/receiver/auth.ts';

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

describe('authenticate', () => {
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

describe('clientCertificateState', () => {
  it('finds no certificate on a plain TCP socket', () => {
    expect(clientCertificateState(new Socket())).toBe('none');
  });
});
