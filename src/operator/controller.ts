/**
 * The reconciler: AuditSink and AuditPipeline resources in, sinks of the data plane out. Informer
 * events only queue keys; a reconcile reads the current object from the cache, so repeated or
 * missed events cannot lead it astray. The Secrets that sinks reference are watched one by one,
 * so that the operator reads only those, and a rotated token or certificate takes effect at once.
 */
import { RECEIVER_ROUTES } from '../receiver/index.ts';
import type { DataPlane } from '../runtime/dataplane.ts';
import { referencedSecrets, type SecretStore } from '../runtime/secrets.ts';
import type { SinkRegistry } from '../sinks/registry.ts';
import { type SinkSettings, sinkFromResource, SinkSpecError } from '../sinks/spec.ts';
import { type Sink, type SinkKind, type SinkRef, sinkKey } from '../sinks/types.ts';
import type { Logger } from '../telemetry/logger.ts';
import type { ReconcileMetrics, ReconcileOutcome } from '../telemetry/metrics.ts';
import { type Clock, sleep, systemClock } from './clock.ts';
import { type ChangeType, Informer } from './informer.ts';
import {
  type KubeObject,
  SECRET_OPT_IN_LABEL,
  type SecretObject,
  type SecretsApi,
  type SinkResourcesApi,
} from './kube.ts';
import { DONE, type ReconcileResult, TerminalError, WorkQueue } from './workqueue.ts';

/** What the controller drives: the data plane's sinks, listeners and delivery retries. */
export interface ControlledPlane extends Pick<DataPlane, 'apply' | 'dedicatedUrls'> {
  readonly registry: Pick<SinkRegistry, 'retryNow'>;
}

/** What the controller needs. */
export interface ControllerOptions {
  readonly api: SinkResourcesApi & SecretsApi;
  readonly plane: ControlledPlane;
  readonly sinkSettings: SinkSettings;
  /** The operator's namespace: AuditSink Secrets live here. */
  readonly namespace: string;
  /** Base URL of the shared receiver as the apiserver reaches it (status `endpoint`). */
  readonly endpointBase: string;
  /** The process logger; the controller logs as `module: controller`, each reconcile with its key. */
  readonly log: Logger;
  /** Counts and times every reconcile. */
  readonly metrics: ReconcileMetrics;
  /** Called after every change of the configured sinks, e.g. to sync native AuditSinks. */
  readonly onSinksChanged?: (sinks: readonly Sink[]) => void;
  /** Retry delays, the wait for a Secret's first list, reconcile durations; the system's by default. */
  readonly clock?: Clock;
}

/** What the controller knows of one resource; the status writer reads it. */
export interface ResourceState {
  readonly kind: SinkKind;
  readonly object: KubeObject;
  readonly generation: number;
  /** Problems of the current generation's spec; empty when it is valid. */
  readonly problems: readonly string[];
  /** The running sink: the current generation's, or the last valid one's. */
  readonly sink: Sink | undefined;
}

interface SecretWatch {
  readonly informer: Informer<SecretObject>;
  readonly users: Set<string>;
  readonly synced: Promise<void>;
}

const KINDS: readonly SinkKind[] = ['AuditSink', 'AuditPipeline'];

/** How long a reconcile waits for a newly referenced Secret's first list. */
const SECRET_SYNC_WAIT_MS = 5_000;

/** Keeps the data plane's sinks equal to the cluster's resources. */
export class SinkController {
  readonly #options: ControllerOptions;
  readonly #log: Logger;
  readonly #clock: Clock;
  readonly #informers: Record<SinkKind, Informer<KubeObject>>;
  readonly #queue: WorkQueue;
  readonly #states = new Map<string, ResourceState>();
  readonly #secretWatches = new Map<string, SecretWatch>();
  readonly #secrets = new Map<string, Readonly<Record<string, string>>>();
  #applying: Promise<void> = Promise.resolve();

  constructor(options: ControllerOptions) {
    this.#options = options;
    this.#clock = options.clock ?? systemClock;
    const log = options.log.child({ module: 'controller' });
    this.#log = log;
    this.#queue = new WorkQueue({
      reconcile: (key) => this.#measured(key),
      // A few keys at once: a reconcile mostly waits (Secret lists, spool opening), and applies
      // are serialised anyway.
      concurrency: 4,
      // 500 ms doubling: a failed apply (disk, a Secret's first list) is retried soon, not hot.
      baseDelayMs: 500,
      clock: this.#clock,
      onError: (key, err, retryInMs) => {
        const keyed = log.child({ key });
        if (retryInMs === undefined) keyed.warn({ err }, 'resource not applied');
        else keyed.error({ err, retryInMs }, 'reconcile failed; retrying');
      },
    });
    const informer = (kind: SinkKind) =>
      new Informer(options.api.sinkWatch(kind), {
        onChange: (obj, type) => {
          this.#changed(kind, obj, type);
        },
        onError: (err, retryInMs) => {
          log.warn({ err, kind, retryInMs }, 'watch failed; resuming');
        },
        sleep: (ms) => sleep(this.#clock, ms),
        now: () => this.#clock.now(),
      });
    this.#informers = {
      AuditSink: informer('AuditSink'),
      AuditPipeline: informer('AuditPipeline'),
    };
  }

  /** The Secrets referenced by current sinks, decoded, by `namespace/name`. */
  secrets(): SecretStore {
    return this.#secrets;
  }

  /** Every resource the controller knows, valid or not. */
  states(): ResourceState[] {
    return [...this.#states.values()];
  }

  /** Secrets (and keys) a sink references that are missing, as `namespace/name[key]`. */
  missingSecrets(sink: Sink): string[] {
    return referencedSecrets(sink, this.#options.namespace).flatMap(({ id, keys }) => {
      const data = this.#secrets.get(id);
      if (data === undefined) return [`Secret ${id} labelled ${SECRET_OPT_IN_LABEL}=true`];
      return keys.filter((k) => data[k] === undefined).map((k) => `key ${k} of Secret ${id}`);
    });
  }

  /** The URL a sink receives at: its dedicated listener, or its path on the shared one. */
  endpoint(sink: Sink): string | undefined {
    const dedicated = this.#options.plane.dedicatedUrls().get(sink.key);
    if (sink.receiver?.port !== undefined && dedicated === undefined) return undefined;
    const base = dedicated ?? this.#options.endpointBase;
    return `${base}${endpointPath(sink.ref)}`;
  }

  /** Lists and watches both kinds, then reconciles everything listed before resolving. */
  async start(): Promise<void> {
    await Promise.all(KINDS.map((kind) => this.#informers[kind].start()));
    await this.#queue.settled();
  }

  /** Resolves once no reconcile is queued or running (retries waiting on a timer aside). */
  settled(): Promise<void> {
    return this.#queue.settled();
  }

  /** Stops watching and waits for running reconciles. */
  async stop(): Promise<void> {
    await Promise.all([
      ...KINDS.map((kind) => this.#informers[kind].stop()),
      ...[...this.#secretWatches.values()].map((w) => w.informer.stop()),
    ]);
    await this.#queue.close();
  }

  #changed(kind: SinkKind, obj: KubeObject, type: ChangeType): void {
    const key = objectKey(kind, obj);
    // A status write changes resourceVersion, not generation: nothing to reconcile.
    const known = this.#states.get(key);
    // The same object (uid: a delete and re-create missed in a watch gap arrives as an update).
    if (
      type === 'update' &&
      known !== undefined &&
      known.generation === generationOf(obj) &&
      known.object.metadata?.uid === obj.metadata?.uid
    ) {
      this.#states.set(key, { ...known, object: obj });
      return;
    }
    this.#queue.add(key);
  }

  // One reconcile, counted by its result and timed.
  async #measured(key: string): Promise<ReconcileResult> {
    const { kind } = parseKey(key);
    const started = this.#clock.now();
    let result: ReconcileOutcome = 'error';
    try {
      const done = await this.#reconcile(key, this.#log.child({ key }));
      result = 'success';
      return done;
    } catch (err) {
      if (err instanceof TerminalError) result = 'terminal';
      throw err;
    } finally {
      this.#options.metrics.observe(kind, result, (this.#clock.now() - started) / 1000);
    }
  }

  async #reconcile(key: string, log: Logger): Promise<ReconcileResult> {
    const { kind, namespace, name } = parseKey(key);
    const obj = this.#informers[kind].get(name, kind === 'AuditSink' ? undefined : namespace);
    const previous = this.#states.get(key);
    if (obj === undefined) {
      this.#states.delete(key);
      this.#releaseSecrets(key);
      await this.#applySinks();
      log.info({}, 'sink removed');
      return DONE;
    }
    const generation = generationOf(obj);
    let sink: Sink | undefined;
    let problems: readonly string[] = [];
    try {
      sink = sinkFromResource(obj, this.#options.sinkSettings);
    } catch (err) {
      if (!(err instanceof SinkSpecError)) throw err;
      problems = err.problems;
    }
    // An invalid change keeps the last valid sink of the same object running: audit events keep
    // flowing, and the status says which generation is in effect.
    const sameObject = previous?.object.metadata?.uid === obj.metadata?.uid;
    const running = sink ?? (sameObject ? previous?.sink : undefined);
    this.#states.set(key, { kind, object: obj, generation, problems, sink: running });
    if (sink !== undefined) await this.#watchSecrets(key, sink);
    await this.#applySinks();
    if (problems.length > 0) {
      throw new TerminalError(`${key}: ${problems.join('; ')}`);
    }
    log.info({ generation }, 'sink applied');
    return DONE;
  }

  // One apply at a time, each of the state as it is when its turn comes: concurrent reconciles
  // must not apply an older set after a newer one (listeners and native sinks included).
  #applySinks(): Promise<void> {
    const next = this.#applying.then(async () => {
      const sinks = [...this.#states.values()].flatMap((s) =>
        s.sink === undefined ? [] : [s.sink],
      );
      await this.#options.plane.apply(sinks);
      this.#options.onSinksChanged?.(sinks);
    });
    this.#applying = next.catch(() => undefined);
    return next;
  }

  // Starts watching the Secrets a sink references (and stops those it no longer does), and waits
  // for their first list so that the sink starts with its token.
  async #watchSecrets(key: string, sink: Sink): Promise<void> {
    const wanted = new Set(referencedSecrets(sink, this.#options.namespace).map((r) => r.id));
    for (const [id, watch] of this.#secretWatches) {
      if (watch.users.has(key) && !wanted.has(id)) this.#unuse(id, key);
    }
    const pending: Promise<void>[] = [];
    for (const id of wanted) {
      let watch = this.#secretWatches.get(id);
      if (watch === undefined) watch = this.#startSecretWatch(id);
      watch.users.add(key);
      pending.push(watch.synced);
    }
    // A Secret that cannot be listed (RBAC) must not stall reconciles: its watch keeps retrying,
    // and status reports the Secret missing meanwhile.
    if (pending.length === 0) return;
    let timer: unknown;
    const waited = new Promise<void>((resolve) => {
      timer = this.#clock.setTimeout(resolve, SECRET_SYNC_WAIT_MS);
    });
    try {
      await Promise.race([Promise.all(pending), waited]);
    } finally {
      this.#clock.clearTimeout(timer);
    }
  }

  #startSecretWatch(id: string): SecretWatch {
    const [namespace, name] = id.split('/') as [string, string];
    const informer = new Informer(this.#options.api.secretWatch(namespace, name), {
      onChange: (secret, type) => {
        if (type === 'delete') this.#secrets.delete(id);
        else this.#secrets.set(id, decodeSecret(secret));
        // Users re-apply (a dedicated listener picks up a renewed certificate) and retry at once
        // what a missing or wrong token made their destinations refuse.
        for (const user of this.#secretWatches.get(id)?.users ?? []) {
          this.#queue.add(user);
          this.#options.plane.registry.retryNow(user);
        }
      },
      onError: (err, retryInMs) => {
        this.#log.warn({ err, secret: id, retryInMs }, 'Secret watch failed; resuming');
      },
      sleep: (ms) => sleep(this.#clock, ms),
      now: () => this.#clock.now(),
    });
    const watch: SecretWatch = { informer, users: new Set(), synced: informer.start() };
    this.#secretWatches.set(id, watch);
    return watch;
  }

  #releaseSecrets(key: string): void {
    for (const [id, watch] of this.#secretWatches) {
      if (watch.users.has(key)) this.#unuse(id, key);
    }
  }

  #unuse(id: string, key: string): void {
    const watch = this.#secretWatches.get(id);
    if (watch === undefined) return;
    watch.users.delete(key);
    if (watch.users.size > 0) return;
    this.#secretWatches.delete(id);
    this.#secrets.delete(id);
    void watch.informer.stop();
  }
}

/** The receiver path of a sink's own endpoint. */
export function endpointPath(ref: SinkRef): string {
  return ref.kind === 'AuditSink'
    ? RECEIVER_ROUTES.sinks.replace(':name', ref.name)
    : RECEIVER_ROUTES.pipelines.replace(':namespace', ref.namespace).replace(':name', ref.name);
}

function objectKey(kind: SinkKind, obj: KubeObject): string {
  const name = obj.metadata?.name ?? '';
  const namespace = kind === 'AuditSink' ? '' : (obj.metadata?.namespace ?? '');
  return sinkKey({ kind, namespace, name });
}

function parseKey(key: string): SinkRef {
  const [kind, ...rest] = key.split('/');
  if (kind === 'AuditSink') return { kind, namespace: '', name: rest[0] ?? '' };
  return { kind: 'AuditPipeline', namespace: rest[0] ?? '', name: rest[1] ?? '' };
}

function generationOf(obj: KubeObject): number {
  return obj.metadata?.generation ?? 0;
}

function decodeSecret(secret: SecretObject): Record<string, string> {
  const data: Record<string, string> = {};
  for (const [k, v] of Object.entries(secret.data ?? {})) {
    data[k] = Buffer.from(v, 'base64').toString('utf8');
  }
  return data;
}
