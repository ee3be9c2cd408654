/**
 * Applying a policy decision to a received event: decide the effective level, drop or trim.
 *
 * Events are shared by every sink that receives them, so nothing here mutates its input:
 * trimmed events are shallow copies, and objects losing `managedFields` are copied along the path.
 */
import {
  type AuditEvent,
  type JsonObject,
  type JsonValue,
  type Level,
  levelRank,
  minLevel,
  type Stage,
} from '../audit/types.ts';
import { attributesFromEvent, type RequestAttributes } from './attributes.ts';
import { type CompiledPolicy, evaluatePolicy } from './checker.ts';

/** What a policy decides for one received event. */
export interface Decision {
  /** Effective level: the lower of the event's level and the matched rule's; None when dropped by level. */
  readonly level: Level;
  /** The matched rule's level (None when no rule matched). */
  readonly ruleLevel: Level;
  readonly omitStages: readonly Stage[];
  readonly omitManagedFields: boolean;
  /** Whether the event survives: level above None and its stage not omitted. */
  readonly emitted: boolean;
  /** The rule asked for more than the event carries (the apiserver captured too little). */
  readonly captureInsufficient: boolean;
  /** Index of the matched rule, -1 when none matched. */
  readonly ruleIndex: number;
}

/**
 * Decides what a policy keeps of a received event. Pass `attrs` when deciding one event for several
 * policies, to derive them once.
 */
export function decideLevel(
  policy: CompiledPolicy,
  event: AuditEvent,
  attrs: RequestAttributes = attributesFromEvent(event),
): Decision {
  const config = evaluatePolicy(policy, attrs);
  const level = minLevel(event.level, config.level);
  return {
    level,
    ruleLevel: config.level,
    omitStages: config.omitStages,
    omitManagedFields: config.omitManagedFields,
    emitted: level !== 'None' && !config.omitStages.includes(event.stage),
    captureInsufficient: levelRank(config.level) > levelRank(event.level),
    ruleIndex: config.ruleIndex,
  };
}

/**
 * Trims an event to `level` (never raising it): Metadata drops the request and response objects,
 * Request drops the response object. With `omitManagedFields`, `metadata.managedFields` is removed
 * from the objects that remain. Returns the input itself when nothing changes.
 *
 * @throws RangeError for level None: a None event is dropped, not trimmed.
 */
export function enforceLevel(
  event: AuditEvent,
  level: Level,
  omitManagedFields = false,
): AuditEvent {
  if (level === 'None')
    throw new RangeError('level None drops the event; there is nothing to trim');
  const effective = minLevel(event.level, level);
  const keepRequest = effective === 'Request' || effective === 'RequestResponse';
  const keepResponse = effective === 'RequestResponse';

  let requestObject = keepRequest ? event.requestObject : undefined;
  let responseObject = keepResponse ? event.responseObject : undefined;
  if (omitManagedFields) {
    if (requestObject !== undefined) requestObject = withoutManagedFields(requestObject);
    if (responseObject !== undefined) responseObject = withoutManagedFields(responseObject);
  }
  if (
    effective === event.level &&
    requestObject === event.requestObject &&
    responseObject === event.responseObject
  ) {
    return event;
  }
  // A copy without the bodies, which are added back as kept: deleting them from a copy would turn
  // it into a dictionary-mode object, slower to read and to serialise.
  const { requestObject: _request, responseObject: _response, ...rest } = event;
  const trimmed: AuditEvent = rest;
  trimmed.level = effective;
  if (requestObject !== undefined) trimmed.requestObject = requestObject;
  if (responseObject !== undefined) trimmed.responseObject = responseObject;
  return trimmed;
}

/** The outcome of a policy for one event: the decision, and the trimmed event when it survives. */
export interface PolicyOutcome {
  readonly decision: Decision;
  readonly event: AuditEvent | null;
}

/** Decides and enforces in one step. */
export function applyPolicy(policy: CompiledPolicy, event: AuditEvent): PolicyOutcome {
  const decision = decideLevel(policy, event);
  return {
    decision,
    event: decision.emitted
      ? enforceLevel(event, decision.level, decision.omitManagedFields)
      : null,
  };
}

/**
 * Removes `metadata.managedFields` the way the apiserver's `copyWithoutManagedFields` does: from an
 * object, from each item of a list, and from each row object of a `meta.k8s.io` Table. Anything
 * else is returned unchanged. Returns the input itself when it has no managed fields.
 */
export function withoutManagedFields(value: JsonValue): JsonValue {
  if (!isObject(value)) return value;
  let result = stripObject(value);
  const items = value.items;
  if (Array.isArray(items)) {
    const stripped = mapChanged(items, stripObjectValue);
    if (stripped !== items) result = { ...result, items: stripped };
  }
  const rows = value.rows;
  if (value.kind === 'Table' && Array.isArray(rows)) {
    const stripped = mapChanged(rows, (row) => {
      if (!isObject(row) || !isObject(row.object)) return row;
      const object = stripObject(row.object);
      return object === row.object ? row : { ...row, object };
    });
    if (stripped !== rows) result = { ...result, rows: stripped };
  }
  return result;
}

function stripObjectValue(value: JsonValue): JsonValue {
  return isObject(value) ? stripObject(value) : value;
}

function stripObject(object: JsonObject): JsonObject {
  const metadata = object.metadata;
  if (!isObject(metadata) || !('managedFields' in metadata)) return object;
  // A plain copy loop: rest destructuring takes a slow path in V8.
  const rest: JsonObject = {};
  for (const key in metadata) if (key !== 'managedFields') rest[key] = metadata[key] as JsonValue;
  return { ...object, metadata: rest };
}

function mapChanged(list: JsonValue[], fn: (v: JsonValue) => JsonValue): JsonValue[] {
  let out: JsonValue[] | null = null;
  for (let i = 0; i < list.length; i++) {
    const item = list[i] as JsonValue;
    const mapped = fn(item);
    if (mapped !== item) {
      out ??= list.slice();
      out[i] = mapped;
    }
  }
  return out ?? list;
}

function isObject(value: JsonValue | undefined): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
