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
  | { readonly ok: true; readonly via: 'token' | 'certificate' | 'sink-token' }
  | {
      readonly ok: false;
      readonly code:
        'UNAUTHENTICATED' | 'INVALID_TOKEN' | 'UNTRUSTED_CLIENT_CERTIFICATE' | 'ENDPOINT_FORBIDDEN';
    };

/**
 * Accepted bearer tokens, kept as SHA-256 digests only: a request is compared with digests made
 * once, not with the tokens themselves.
 */
export class TokenDigests {
  readonly #digests: readonly Buffer[];

  private constructor(digests: readonly Buffer[]) {
    this.#digests = digests;
  }

  /** The digests of `tokens`; empty tokens are never accepted. */
  static of(tokens: Iterable<string>): TokenDigests {
    return new TokenDigests([...new Set(tokens)].filter((t) => t !== '').map(sha256));
  }

  /** How many tokens are accepted. */
  get size(): number {
    return this.#digests.length;
  }

  /**
   * Whether `presented` (a digest) is one of them: every digest is compared, in constant time,
   * so timing tells nothing about which token a guess resembled or how many there are before it.
   */
  matches(presented: Buffer): boolean {
    let match = false;
    for (const accepted of this.#digests) {
      if (timingSafeEqual(presented, accepted)) match = true;
    }
    return match;
  }
}

/** Where a request writes: the fan-in endpoint (every sink), or one sink's own endpoints. */
export type AuthTarget = { readonly kind: 'all' } | { readonly kind: 'sink'; readonly key: string };

/** What the receiver accepts: its own credentials everywhere, each sink's on that sink only. */
export interface Credentials {
  /** The receiver-wide bearer tokens (the kube-apiserver's), accepted on every endpoint. */
  readonly receiverTokens: ReadonlySet<string>;
  /** Each sink's own bearer tokens, by sink key, accepted on that sink's endpoints only. */
  readonly sinkTokens: ReadonlyMap<string, TokenDigests>;
}

/**
 * Decides whether a request may write to `target` (ADR 0018). A verified client certificate or a
 * receiver-wide token may write anywhere; a sink's token only to that sink. A token no one
 * accepts is 401 (not authenticated); a sink's token elsewhere is 403 (authenticated, not
 * authorised there). Every accepted token is compared, whatever the outcome, so the time taken
 * does not tell which kind of token, or whose, a guess came close to.
 */
export function authorize(
  authorization: string | undefined,
  certificate: ClientCertificateState,
  target: AuthTarget,
  credentials: Credentials,
): AuthResult {
  if (certificate === 'verified') return { ok: true, via: 'certificate' };
  const token = bearerToken(authorization);
  if (token === undefined) {
    if (certificate === 'rejected') return { ok: false, code: 'UNTRUSTED_CLIENT_CERTIFICATE' };
    return { ok: false, code: 'UNAUTHENTICATED' };
  }
  const presented = sha256(token);
  const receiverWide = tokenMatches(presented, credentials.receiverTokens);
  let own = false;
  let elsewhere = false;
  for (const [key, tokens] of credentials.sinkTokens) {
    if (!tokens.matches(presented)) continue;
    if (target.kind === 'sink' && key === target.key) own = true;
    else elsewhere = true;
  }
  if (receiverWide) return { ok: true, via: 'token' };
  if (own) return { ok: true, via: 'sink-token' };
  if (elsewhere) return { ok: false, code: 'ENDPOINT_FORBIDDEN' };
  return { ok: false, code: 'INVALID_TOKEN' };
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
function tokenMatches(presented: Buffer, tokens: ReadonlySet<string>): boolean {
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
