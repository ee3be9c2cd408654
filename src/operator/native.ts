/**
 * Native dynamic mode (SPEC 4.5): on apiservers that serve `auditregistration.k8s.io/v1alpha1`
 * (1.13–1.18 with `--audit-dynamic-configuration`), one native AuditSink per sink, pointing at
 * that sink's signed endpoint, so that the apiserver itself fans out. The native API has no
 * client credentials; the HMAC-signed path admits posts for that one sink only. Only the leader
 * writes; every replica serves the endpoints.
 */
import { createHash } from 'node:crypto';
import { type Level, levelRank, STAGES, type Stage } from '../audit/types.ts';
import { nativeSignature, RECEIVER_ROUTES } from '../receiver/index.ts';
import type { Sink } from '../sinks/types.ts';
import type { Logger } from '../telemetry/logger.ts';
import { type Clock, every, sleep, systemClock } from './clock.ts';
import { type KubeObject, type NativeAuditSinksApi, NATIVE_GROUP, NATIVE_VERSION } from './kube.ts';

/** The label that marks native AuditSinks as ours; nothing else is ever changed or deleted. */
export const NATIVE_MANAGED_BY = Object.freeze({
  'app.kubernetes.io/managed-by': 'kube-audit-operator',
});

/** The annotation naming the sink a native AuditSink belongs to. */
export const NATIVE_SINK_ANNOTATION = 'kube-audit.dev/sink';

/** A minute: a renewed serving certificate reaches the apiserver well before the old one expires. */
const NATIVE_RESYNC_MS = 60_000;
/** After a failed sync (apiserver busy, a conflict): soon, but not in a hot loop. */
const NATIVE_RETRY_MS = 2_000;

/** What native mode needs. */
export interface NativeSinksOptions {
  readonly api: NativeAuditSinksApi;
  /** The receivers' base URL as the apiserver reaches it. */
  readonly endpointBase: string;
  readonly key: string;
  /** PEM the apiserver verifies the receiver with (read at every sync); none: the system roots. */
  readonly caBundle: () => Promise<string | undefined>;
  /** How often the native sinks are checked even without a change (a renewed certificate). */
  readonly resyncMs?: number;
  /** The process logger; native sync logs as `module: native`. */
  readonly log: Logger;
  readonly leading: () => boolean;
  /** The resync and retry timers; the system's by default. */
  readonly clock?: Clock;
}

/** The native AuditSink that mirrors a sink. Pure. */
export function nativeSinkFor(
  sink: Sink,
  endpointBase: string,
  key: string,
  caBundle: string | undefined,
): KubeObject {
  const { level, stages } = nativeCapture(sink);
  const signature = nativeSignature(key, sink.key);
  const path =
    sink.ref.kind === 'AuditSink'
      ? RECEIVER_ROUTES.nativeSinks.replace(':name', sink.ref.name)
      : RECEIVER_ROUTES.nativePipelines
          .replace(':namespace', sink.ref.namespace)
          .replace(':name', sink.ref.name);
  return {
    apiVersion: `${NATIVE_GROUP}/${NATIVE_VERSION}`,
    kind: 'AuditSink',
    metadata: {
      name: nativeSinkName(sink.key),
      labels: { ...NATIVE_MANAGED_BY },
      annotations: { [NATIVE_SINK_ANNOTATION]: sink.key },
    },
    spec: {
      policy: { level, stages },
      webhook: {
        // The apiserver's defaults for native sinks; our own queue absorbs bursts.
        throttle: { qps: 10, burst: 15 },
        clientConfig: {
          url: `${endpointBase}${path.replace(':signature', signature)}`,
          ...(caBundle === undefined ? {} : { caBundle: Buffer.from(caBundle).toString('base64') }),
        },
      },
    },
  };
}

/**
 * The native policy (one level, the kept stages) that captures everything a sink's policy can
 * keep: its highest rule level, and every stage some capturing rule keeps. Our own policy then
 * decides per event, exactly.
 */
export function nativeCapture(sink: Sink): { level: Level; stages: Stage[] } {
  let level: Level = 'None';
  const kept = new Set<Stage>();
  for (const rule of sink.policy.rules) {
    if (rule.level === 'None') continue;
    if (levelRank(rule.level) > levelRank(level)) level = rule.level;
    const omitted = new Set([...(sink.policy.omitStages ?? []), ...(rule.omitStages ?? [])]);
    for (const stage of STAGES) if (!omitted.has(stage)) kept.add(stage);
  }
  return { level, stages: STAGES.filter((s) => kept.has(s)) };
}

/** A stable native AuditSink name for a sink key: DNS-safe whatever the key's length. */
export function nativeSinkName(key: string): string {
  return `kube-audit-${createHash('sha256').update(key).digest('hex').slice(0, 16)}`;
}

/** Keeps native AuditSinks equal to the sinks, while leading. */
export class NativeSinks {
  readonly #options: NativeSinksOptions;
  readonly #log: Logger;
  readonly #clock: Clock;
  #wanted: readonly Sink[] = [];
  #syncing: Promise<void> = Promise.resolve();
  #again = false;
  #busy = false;
  #stopped = false;
  readonly #stopTimer: () => void;

  constructor(options: NativeSinksOptions) {
    this.#options = options;
    this.#log = options.log.child({ module: 'native' });
    this.#clock = options.clock ?? systemClock;
    this.#stopTimer = every(this.#clock, options.resyncMs ?? NATIVE_RESYNC_MS, () => {
      this.sync(this.#wanted);
    });
  }

  /** Records the current sinks and syncs (one sync at a time; the latest set wins). */
  sync(sinks: readonly Sink[]): void {
    this.#wanted = sinks;
    if (this.#busy) {
      this.#again = true;
      return;
    }
    this.#busy = true;
    this.#syncing = this.#loop();
  }

  /** Waits for a sync in progress; native sinks stay, as the endpoints stay on other replicas. */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#stopTimer();
    await this.#syncing;
  }

  async #loop(): Promise<void> {
    do {
      this.#again = false;
      if (this.#stopped || !this.#options.leading()) break;
      try {
        await this.#syncOnce(this.#wanted);
      } catch (err) {
        this.#log.error(
          { err, retryInMs: NATIVE_RETRY_MS },
          'native AuditSinks not synced; retrying',
        );
        await sleep(this.#clock, NATIVE_RETRY_MS);
        this.#again = true;
      }
    } while (this.#again);
    // In the same turn as the last check of #again: a sync() from now on starts a new loop.
    this.#busy = false;
  }

  async #syncOnce(sinks: readonly Sink[]): Promise<void> {
    const { api, endpointBase, key } = this.#options;
    const log = this.#log;
    const caBundle = await this.#options.caBundle();
    const selector = Object.entries(NATIVE_MANAGED_BY)
      .map(([k, v]) => `${k}=${v}`)
      .join(',');
    const existing = new Map(
      (await api.listNativeSinks(selector)).map((o) => [o.metadata?.name ?? '', o]),
    );
    const wanted = new Map(
      sinks.map((s) => {
        const body = nativeSinkFor(s, endpointBase, key, caBundle);
        return [body.metadata?.name ?? '', body];
      }),
    );
    for (const [name, body] of wanted) {
      const current = existing.get(name);
      if (current !== undefined && sameNativeSpec(current, body)) continue;
      await api.applyNativeSink(body, current);
      log.info(
        { nativeSink: name, sink: body.metadata?.annotations?.[NATIVE_SINK_ANNOTATION] },
        'native AuditSink applied',
      );
    }
    for (const name of existing.keys()) {
      if (wanted.has(name)) continue;
      await api.deleteNativeSink(name);
      log.info({ nativeSink: name }, 'native AuditSink removed');
    }
  }
}

// What the operator sets, compared field by field: the apiserver returns the spec with its own
// key order and defaults.
function sameNativeSpec(current: KubeObject, wanted: KubeObject): boolean {
  const pick = (o: KubeObject) => {
    const spec = (o.spec ?? {}) as {
      policy?: { level?: string; stages?: string[] };
      webhook?: {
        throttle?: { qps?: number; burst?: number };
        clientConfig?: { url?: string; caBundle?: string };
      };
    };
    return JSON.stringify([
      spec.policy?.level,
      spec.policy?.stages,
      spec.webhook?.throttle?.qps,
      spec.webhook?.throttle?.burst,
      spec.webhook?.clientConfig?.url,
      spec.webhook?.clientConfig?.caBundle,
    ]);
  };
  return pick(current) === pick(wanted);
}
