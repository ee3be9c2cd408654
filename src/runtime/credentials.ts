/**
 * Each sink's own write credentials (ADR 0018): the bearer tokens of the Secret key a sink names
 * in `spec.receiver.tokenSecretRef`, read from the current Secrets on every request, so that a
 * rotated Secret applies at once, and kept as digests only.
 */
import { TokenDigests } from '../receiver/index.ts';
import type { Sink } from '../sinks/types.ts';
import { secretNamespace, type SecretStore } from './secrets.ts';

/**
 * The tokens of a token file or Secret key: one per line, surrounding blanks trimmed, blank lines
 * and lines starting with `#` ignored.
 */
export function tokenLines(text: string): string[] {
  const tokens: string[] = [];
  for (const line of text.split('\n')) {
    const token = line.trim();
    if (token !== '' && !token.startsWith('#')) tokens.push(token);
  }
  return tokens;
}

interface Parsed {
  /** The Secret value the digests were made from. */
  readonly text: string;
  readonly digests: TokenDigests;
}

/** The sinks' own tokens, by sink key, as the receivers read them on every request. */
export class SinkTokens {
  #sinks: readonly Sink[] = [];
  readonly #secrets: () => SecretStore;
  readonly #operatorNamespace: string;
  // Digests are made once per Secret value, not per request.
  readonly #parsed = new Map<string, Parsed>();

  /** `operatorNamespace` holds the Secrets of AuditSinks. */
  constructor(secrets: () => SecretStore, operatorNamespace: string) {
    this.#secrets = secrets;
    this.#operatorNamespace = operatorNamespace;
  }

  /** Makes `sinks` the current set; only those naming a token Secret are kept. */
  setSinks(sinks: readonly Sink[]): void {
    this.#sinks = sinks.filter((s) => s.receiver?.tokenSecretRef !== undefined);
    const keys = new Set(this.#sinks.map((s) => s.key));
    for (const key of this.#parsed.keys()) if (!keys.has(key)) this.#parsed.delete(key);
  }

  /**
   * Each sink's current tokens; a sink whose Secret or key is missing, or holds no token, is
   * absent (its endpoints then accept the receiver-wide credentials only).
   */
  current(): ReadonlyMap<string, TokenDigests> {
    const secrets = this.#secrets();
    const result = new Map<string, TokenDigests>();
    for (const sink of this.#sinks) {
      const ref = sink.receiver?.tokenSecretRef;
      if (ref === undefined) continue;
      const namespace = secretNamespace(sink.ref, this.#operatorNamespace);
      const text = secrets.get(`${namespace}/${ref.name}`)?.[ref.key];
      if (text === undefined) continue;
      let parsed = this.#parsed.get(sink.key);
      if (parsed?.text !== text) {
        parsed = { text, digests: TokenDigests.of(tokenLines(text)) };
        this.#parsed.set(sink.key, parsed);
      }
      if (parsed.digests.size > 0) result.set(sink.key, parsed.digests);
    }
    return result;
  }
}

/**
 * What is missing of a sink's own token Secret in `secrets` (`Secret ns/name`, `key k of Secret
 * ns/name`, or `a token in key k of Secret ns/name`); undefined when it names none or has tokens.
 * Never the Secret's content.
 */
export function missingTokenSecret(
  sink: Sink,
  secrets: SecretStore,
  operatorNamespace: string,
): string | undefined {
  const ref = sink.receiver?.tokenSecretRef;
  if (ref === undefined) return undefined;
  const id = `${secretNamespace(sink.ref, operatorNamespace)}/${ref.name}`;
  const data = secrets.get(id);
  if (data === undefined) return `Secret ${id}`;
  const value = data[ref.key];
  if (value === undefined) return `key ${ref.key} of Secret ${id}`;
  return tokenLines(value).length === 0 ? `a token in key ${ref.key} of Secret ${id}` : undefined;
}
