/**
 * Routing one received event to every sink: tenant scope, the sink's policy, and redaction of
 * credentials. Pure; the event is shared and never mutated.
 */
import { type AuditEvent, type Level, levelRank, minLevel } from '../audit/types.ts';
import { attributesFromEvent, type RequestAttributes } from '../policy/attributes.ts';
import { keepsBodies } from '../policy/checker.ts';
import { type Decision, decideLevel, enforceLevel } from '../policy/enforce.ts';
import type { Sink } from './types.ts';

/** Why a sink did not keep an event (the `dropped` counter's reasons, apart from overflow). */
export type DropReason = 'namespace' | 'policy';

/** What one sink makes of one event. */
export type SinkOutcome =
  | {
      readonly sink: Sink;
      readonly kept: true;
      /** The event as the sink keeps it; its level is the effective one. */
      readonly event: AuditEvent;
      readonly decision: Decision;
      /** Bodies were removed because the request carries credentials. */
      readonly redacted: boolean;
    }
  | {
      readonly sink: Sink;
      readonly kept: false;
      readonly reason: DropReason;
      readonly decision?: Decision;
    };

/** Operator settings the router applies to every sink. */
export interface RoutingSettings {
  /** Keep request and response bodies of credential-bearing requests (off: they become Metadata). */
  readonly allowSecretPayloads: boolean;
}

/**
 * Requests whose bodies carry credentials: Secrets, service account tokens (TokenRequest), and the
 * tokens sent for review (TokenReview).
 */
export function carriesCredentials(attrs: RequestAttributes): boolean {
  if (!attrs.resourceRequest) return false;
  if (attrs.apiGroup === '') {
    return (
      attrs.resource === 'secrets' ||
      (attrs.resource === 'serviceaccounts' && attrs.subresource === 'token')
    );
  }
  return attrs.apiGroup === 'authentication.k8s.io' && attrs.resource === 'tokenreviews';
}

/** Routes one event to each sink, in order. */
export function routeEvent(
  event: AuditEvent,
  sinks: readonly Sink[],
  settings: RoutingSettings,
): SinkOutcome[] {
  const routing = new EventRouting(event, settings);
  return sinks.map((sink) => routing.route(sink));
}

/**
 * One event on its way to several sinks: what every sink shares (request attributes, whether
 * bodies carry credentials, trimmed copies) is worked out once.
 */
export class EventRouting {
  readonly event: AuditEvent;
  readonly attrs: RequestAttributes;
  readonly #redact: boolean;
  // Sinks that keep the event the same way share one trimmed copy (serialised once downstream),
  // by level and omitManagedFields; made on the first copy, so that an event every sink keeps as
  // it came allocates nothing here.
  #trimmed: AuditEvent[] | undefined;

  constructor(event: AuditEvent, settings: RoutingSettings) {
    this.event = event;
    this.attrs = attributesFromEvent(event);
    this.#redact = !settings.allowSecretPayloads && carriesCredentials(this.attrs);
  }

  /**
   * The namespace whose tenant sinks may see the event: the one the request addressed (the URL's,
   * for a create), so that a body cannot move an event into another tenant's trail; null for
   * non-resource requests, which no tenant sees. Cluster-scoped requests have namespace "".
   */
  get tenantNamespace(): string | null {
    return this.attrs.resourceRequest ? this.attrs.namespace : null;
  }

  /** What `sink` makes of the event. */
  route(sink: Sink): SinkOutcome {
    if (sink.scope.namespace !== null && this.tenantNamespace !== sink.scope.namespace) {
      return { sink, kept: false, reason: 'namespace' };
    }
    const decision = decideLevel(sink.compiledPolicy, this.event, this.attrs);
    if (!decision.emitted) return { sink, kept: false, reason: 'policy', decision };
    const level = this.#redact ? minLevel(decision.level, 'Metadata') : decision.level;
    return {
      sink,
      kept: true,
      event: this.#trimmedCopy(level, decision.omitManagedFields),
      decision,
      redacted: level !== decision.level,
    };
  }

  #trimmedCopy(level: Level, omitManagedFields: boolean): AuditEvent {
    const slot = levelRank(level) * 2 + (omitManagedFields ? 1 : 0);
    const cached = this.#trimmed?.[slot];
    if (cached !== undefined) return cached;
    const copy = enforceLevel(this.event, level, omitManagedFields);
    if (copy !== this.event) (this.#trimmed ??= [])[slot] = copy;
    return copy;
  }
}

/**
 * The sinks an event can reach: cluster-wide sinks see every event, a tenant's sinks only the
 * events of its namespace. Routing looks up the event's namespace instead of asking every sink,
 * so the cost per event does not grow with the number of tenants.
 */
export class RouteIndex<T extends { readonly sink: Sink }> {
  /** Every entry, in the order given. */
  readonly all: readonly T[];
  /** Whether some entry's policy may keep a request or response body. */
  readonly keepsBodies: boolean;
  readonly #clusterWide: T[] = [];
  /** Per namespace, the cluster-wide entries followed by its tenants'. */
  readonly #byNamespace = new Map<string, T[]>();

  constructor(entries: readonly T[]) {
    this.all = entries;
    this.keepsBodies = entries.some((entry) => keepsBodies(entry.sink.compiledPolicy));
    const tenants = new Map<string, T[]>();
    for (const entry of entries) {
      const namespace = entry.sink.scope.namespace;
      if (namespace === null) this.#clusterWide.push(entry);
      else if (tenants.has(namespace)) tenants.get(namespace)?.push(entry);
      else tenants.set(namespace, [entry]);
    }
    for (const [namespace, own] of tenants) {
      this.#byNamespace.set(namespace, [...this.#clusterWide, ...own]);
    }
  }

  /**
   * The entries whose scope includes the event: cluster-wide ones, then its tenant's. A list
   * built once per namespace, not per event.
   */
  candidates(routing: EventRouting): readonly T[] {
    const namespace = routing.tenantNamespace;
    return (namespace === null ? undefined : this.#byNamespace.get(namespace)) ?? this.#clusterWide;
  }
}
