/**
 * Authentication of audit webhook requests, as the apiserver's webhook kubeconfig can present it: a
 * bearer token, or a client certificate signed by the client CA.
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import type { Socket } from 'node:net';
import { TLSSocket } from 'node:tls';

/** What the TLS handshake established about the client's certificate. */
export type ClientCertificateState = 'none' | 'verified' | 'rejected';

/** The outcome of authenticating one request. */
export type AuthResult =
  | { readonly ok: true; readonly via: 'token' | 'certificate' }
  | {
      readonly ok: false;
      readonly code: 'UNAUTHENTICATED' | 'INVALID_TOKEN' | 'UNTRUSTED_CLIENT_CERTIFICATE';
    };

/**
 * Decides whether a request is authenticated: a valid bearer token or a verified client
 * certificate suffices. 401 when it carries neither credential, 403 when what it carries is wrong.
 */
export function authenticate(
  authorization: string | undefined,
  certificate: ClientCertificateState,
  tokens: ReadonlySet<string>,
): AuthResult {
  if (certificate === 'verified') return { ok: true, via: 'certificate' };
  const token = bearerToken(authorization);
  if (token !== undefined && tokenMatches(token, tokens)) return { ok: true, via: 'token' };
  if (token !== undefined) return { ok: false, code: 'INVALID_TOKEN' };
  if (certificate === 'rejected') return { ok: false, code: 'UNTRUSTED_CLIENT_CERTIFICATE' };
  return { ok: false, code: 'UNAUTHENTICATED' };
}

/** The client certificate state of a connection; plain sockets (and `inject()`) have none. */
export function clientCertificateState(socket: Socket): ClientCertificateState {
  if (!(socket instanceof TLSSocket)) return 'none';
  // The server asks for a certificate without requiring one (rejectUnauthorized: false), so a
  // token-only client still completes the handshake; `authorized` says whether the CA verified it.
  if (socket.authorized) return 'verified';
  return Object.keys(socket.getPeerCertificate()).length === 0 ? 'none' : 'rejected';
}

const BEARER = /^bearer[ \t]+([^ \t]+)[ \t]*$/i;

/**
 * The token of an `Authorization: Bearer` header. A header of another scheme (Basic, ...) is no
 * bearer credential at all: undefined.
 */
export function bearerToken(authorization: string | undefined): string | undefined {
  if (authorization === undefined) return undefined;
  return BEARER.exec(authorization)?.[1];
}

/**
 * Compares digests in constant time and visits every token, so response timing tells nothing about
 * how much of a guess was right or which token it resembled.
 */
function tokenMatches(token: string, tokens: ReadonlySet<string>): boolean {
  const presented = sha256(token);
  let match = false;
  for (const accepted of tokens) {
    if (accepted !== '' && timingSafeEqual(presented, sha256(accepted))) match = true;
  }
  return match;
}

function sha256(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}

/**
 * The signature in a native AuditSink endpoint's path: an HMAC of the sink key, so that each
 * native endpoint admits posts for its own sink only, and knowing one reveals no other.
 */
export function nativeSignature(key: string, sinkKey: string): string {
  return createHmac('sha256', key).update(sinkKey).digest('base64url');
}

/** Whether `signature` is the native signature of `sinkKey`, compared in constant time. */
export function nativeSignatureMatches(key: string, sinkKey: string, signature: string): boolean {
  return timingSafeEqual(sha256(nativeSignature(key, sinkKey)), sha256(signature));
}
