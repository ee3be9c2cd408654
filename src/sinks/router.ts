/**
 * Routing one received event to every sink: tenant scope, the sink's policy, and redaction of
 * credentials. Pure; the event is shared and never mutated.
 */
import { type AuditEvent, type Level, minLevel } from '../audit/types.ts';
import { attributesFromEvent, type RequestAttributes } from '../policy/attributes.ts';
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
  const attrs = attributesFromEvent(event);
  const redact = !settings.allowSecretPayloads && carriesCredentials(attrs);
  // Sinks that keep the event the same way share one trimmed copy (serialised once downstream).
  const trimmed = new Map<string, AuditEvent>();
  return sinks.map((sink) => routeToSink(sink, event, attrs, redact, trimmed));
}

function routeToSink(
  sink: Sink,
  event: AuditEvent,
  attrs: RequestAttributes,
  redact: boolean,
  trimmed: Map<string, AuditEvent>,
): SinkOutcome {
  // Scope by the namespace the request addressed (the URL's, for a create): a body cannot move an
  // event into another tenant's trail. Non-resource and cluster-scoped requests have namespace "".
  if (
    sink.scope.namespace !== null &&
    (!attrs.resourceRequest || attrs.namespace !== sink.scope.namespace)
  ) {
    return { sink, kept: false, reason: 'namespace' };
  }
  const decision = decideLevel(sink.compiledPolicy, event, attrs);
  if (!decision.emitted) return { sink, kept: false, reason: 'policy', decision };
  const level = redact ? minLevel(decision.level, 'Metadata') : decision.level;
  return {
    sink,
    kept: true,
    event: trimmedCopy(event, level, decision.omitManagedFields, trimmed),
    decision,
    redacted: level !== decision.level,
  };
}

function trimmedCopy(
  event: AuditEvent,
  level: Level,
  omitManagedFields: boolean,
  cache: Map<string, AuditEvent>,
): AuditEvent {
  const key = `${level}/${omitManagedFields}`;
  let copy = cache.get(key);
  if (copy === undefined) {
    copy = enforceLevel(event, level, omitManagedFields);
    cache.set(key, copy);
  }
  return copy;
}
