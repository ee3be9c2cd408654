/**
 * Dedicated listeners (SPEC 4.2): a sink with `spec.receiver.port` gets its own listener, which
 * feeds that sink only, whichever endpoint is posted to; with `tlsSecretName` it serves the
 * certificate of that Secret (`tls.crt`, `tls.key`), otherwise the shared listener's.
 */
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Registry } from 'prom-client';
import type { Settings } from '../config/settings.ts';
import {
  type AccessDecision,
  type Receiver,
  startReceiver,
  type TokenDigests,
  validateReceiverOptions,
} from '../receiver/index.ts';
import type { Ingest } from '../sinks/ingest.ts';
import type { SinkRegistry } from '../sinks/registry.ts';
import type { Sink } from '../sinks/types.ts';
import type { Logger } from '../telemetry/logger.ts';
import type { SecretStore } from './secrets.ts';

/** The receiver options of the connection limits, shared by every listener. */
export function connectionLimits(settings: Settings): {
  maxRequestsPerConnection: number;
  maxConnectionAgeMs: number;
} {
  return {
    maxRequestsPerConnection: settings.maxRequestsPerConnection,
    maxConnectionAgeMs: settings.maxConnectionAgeSeconds * 1000,
  };
}

interface Listener {
  readonly signature: string;
  readonly receiver: Receiver;
}

/** What every listener shares with the main one. */
export interface ListenerContext {
  readonly settings: Settings;
  readonly registry: SinkRegistry;
  readonly metrics: Registry;
  readonly tokens: () => ReadonlySet<string>;
  /** Each sink's own tokens, by sink key (ADR 0018). */
  readonly sinkTokens: () => ReadonlyMap<string, TokenDigests>;
  readonly readiness: () => boolean;
  readonly secrets: () => SecretStore;
  readonly log: Logger;
  /** Who may read `/metrics`, as on the shared listener; absent, the receivers' own credentials. */
  readonly metricsAccess?: (token: string) => Promise<AccessDecision>;
}

/** The dedicated listeners of the current sinks. */
export class DedicatedListeners {
  readonly #listeners = new Map<string, Listener>();
  readonly #context: ListenerContext;
  #leaving = false;

  constructor(context: ListenerContext) {
    this.#context = context;
  }

  /** The URL each sink's dedicated listener serves, by sink key. */
  urls(): Map<string, string> {
    return new Map([...this.#listeners].map(([key, l]) => [key, l.receiver.url]));
  }

  /**
   * Starts, restarts or stops listeners to match `sinks`. A listener that cannot start (port in
   * use, missing TLS Secret) is logged and retried at the next apply; others are unaffected.
   */
  async apply(sinks: readonly Sink[]): Promise<void> {
    const wanted = new Map(
      sinks.filter((s) => s.receiver?.port !== undefined).map((s) => [s.key, s]),
    );
    for (const [key, listener] of this.#listeners) {
      const sink = wanted.get(key);
      if (sink === undefined || this.#signature(sink) !== listener.signature) {
        // The port is needed again by the new listener: the old one goes first.
        this.#listeners.delete(key);
        await listener.receiver.close();
      }
    }
    for (const [key, sink] of wanted) {
      if (this.#listeners.has(key)) continue;
      try {
        const receiver = await this.#start(sink);
        if (this.#leaving) receiver.leave();
        this.#listeners.set(key, { signature: this.#signature(sink), receiver });
        this.#context.log.info({ sink: key, url: receiver.url }, 'dedicated listener ready');
      } catch (err) {
        this.#context.log.error({ err, sink: key }, 'dedicated listener could not start');
      }
    }
  }

  /** Every dedicated listener, and any started from now on, leaves ({@link Receiver.leave}). */
  leave(): void {
    this.#leaving = true;
    for (const listener of this.#listeners.values()) listener.receiver.leave();
  }

  /** Stops every dedicated listener. */
  async close(): Promise<void> {
    const listeners = [...this.#listeners.values()];
    this.#listeners.clear();
    await Promise.all(listeners.map((l) => l.receiver.close()));
  }

  // Includes the Secret's contents: a renewed certificate restarts the listener.
  #signature(sink: Sink): string {
    const tls = sink.receiver?.tlsSecretName;
    const secret =
      tls === undefined ? undefined : this.#context.secrets().get(`${sink.ref.namespace}/${tls}`);
    return JSON.stringify([sink.receiver?.port, tls, secret?.['tls.crt'], secret?.['tls.key']]);
  }

  async #start(sink: Sink): Promise<Receiver> {
    const { settings, registry } = this.#context;
    const port = sink.receiver?.port as number;
    const ingest: Ingest = {
      // Whatever the path, this listener feeds its own sink only.
      ingest: (events, _target, texts) =>
        registry.ingest(events, { kind: 'sink', key: sink.key }, texts),
      hasSink: (key) => key === sink.key && registry.hasSink(key),
      refusing: () => registry.refusing({ kind: 'sink', key: sink.key }),
      keepsBodies: () => registry.keepsBodies({ kind: 'sink', key: sink.key }),
    };
    return startReceiver(
      validateReceiverOptions({
        host: settings.listen.host,
        port,
        insecure: settings.insecure,
        ...(await this.#tls(sink)),
        tokens: this.#context.tokens,
        sinkTokens: this.#context.sinkTokens,
        sinkKey: sink.key,
        readiness: this.#context.readiness,
        ...(this.#context.metricsAccess === undefined
          ? {}
          : { metricsAccess: this.#context.metricsAccess }),
        ...connectionLimits(settings),
        log: (level: 'info' | 'warn' | 'error', bindings: object, message: string) => {
          this.#context.log[level]({ ...bindings, sink: sink.key }, message);
        },
      }),
      ingest,
      this.#context.metrics,
    );
  }

  async #tls(
    sink: Sink,
  ): Promise<{ tls?: { certFile: string; keyFile: string; clientCAFile?: string } }> {
    const { settings } = this.#context;
    const clientCA =
      settings.clientCAFile === undefined ? {} : { clientCAFile: settings.clientCAFile };
    const name = sink.receiver?.tlsSecretName;
    // Insecure mode is plain HTTP on loopback for every listener, whatever a sink asks for.
    if (settings.insecure) return {};
    if (name === undefined) {
      if (settings.tlsCertFile === undefined || settings.tlsKeyFile === undefined) return {};
      return { tls: { certFile: settings.tlsCertFile, keyFile: settings.tlsKeyFile, ...clientCA } };
    }
    const secret = this.#context.secrets().get(`${sink.ref.namespace}/${name}`);
    const cert = secret?.['tls.crt'];
    const key = secret?.['tls.key'];
    if (cert === undefined || key === undefined) {
      throw new Error(`Secret ${sink.ref.namespace}/${name} with tls.crt and tls.key not found`);
    }
    // The receiver serves certificates from files (and reloads them); keep them private.
    const dir = join(settings.dataDir, 'listeners', sink.ref.namespace, sink.ref.name);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const certFile = join(dir, 'tls.crt');
    const keyFile = join(dir, 'tls.key');
    await writeFile(certFile, cert, { mode: 0o600 });
    await writeFile(keyFile, key, { mode: 0o600 });
    await chmod(keyFile, 0o600);
    return { tls: { certFile, keyFile, ...clientCA } };
  }
}
