/**
 * The `audit.k8s.io/v1` Event model, as the kube-apiserver's audit webhook sends it.
 *
 * Field names and optionality follow upstream `k8s.io/apiserver/pkg/apis/audit/v1/types.go`.
 * Request and response objects stay opaque JSON: the operator never interprets them beyond
 * `metadata.managedFields` (see `policy/enforce.ts`).
 */

/** Audit levels, lowest first. */
export const LEVELS = ['None', 'Metadata', 'Request', 'RequestResponse'] as const;

/** How much of a request an audit event records. */
export type Level = (typeof LEVELS)[number];

/** Audit stages, in the order a request passes through them. */
export const STAGES = ['RequestReceived', 'ResponseStarted', 'ResponseComplete', 'Panic'] as const;

/** The point in request handling at which an audit event was generated. */
export type Stage = (typeof STAGES)[number];

/** The apiVersion the operator works in; v1beta1 input is converted to it. */
export const AUDIT_V1 = 'audit.k8s.io/v1';

/** The deprecated apiVersion still accepted on input (kube-apiserver up to 1.18 could send it). */
export const AUDIT_V1BETA1 = 'audit.k8s.io/v1beta1';

/** Any JSON value. */
export type JsonValue =
  null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

/** A JSON object. */
export type JsonObject = { [key: string]: JsonValue };

/** `authentication.k8s.io/v1` UserInfo as carried by an audit event. */
export interface UserInfo {
  username?: string;
  uid?: string;
  groups?: string[];
  extra?: Record<string, string[]>;
}

/** The object a resource request was about. */
export interface ObjectReference {
  resource?: string;
  namespace?: string;
  name?: string;
  uid?: string;
  apiGroup?: string;
  apiVersion?: string;
  resourceVersion?: string;
  subresource?: string;
}

/** A `metav1.Status`, as recorded in `responseStatus`. */
export interface ResponseStatus {
  code?: number;
  status?: string;
  message?: string;
  reason?: string;
  [key: string]: JsonValue | undefined;
}

/** One audit event (`audit.k8s.io/v1` Event). */
export interface AuditEvent {
  level: Level;
  auditID: string;
  stage: Stage;
  requestURI: string;
  verb: string;
  user: UserInfo;
  impersonatedUser?: UserInfo;
  sourceIPs?: string[];
  userAgent?: string;
  objectRef?: ObjectReference;
  responseStatus?: ResponseStatus;
  requestObject?: JsonValue;
  responseObject?: JsonValue;
  requestReceivedTimestamp?: string;
  stageTimestamp: string;
  annotations?: Record<string, string>;
}

/** Rank of a level: higher keeps more of the request. */
export function levelRank(level: Level): number {
  return LEVELS.indexOf(level);
}

/** The lower of two levels (upstream `Level.Less`). */
export function minLevel(a: Level, b: Level): Level {
  return levelRank(a) <= levelRank(b) ? a : b;
}

/** Whether `value` is one of the audit levels. */
export function isLevel(value: unknown): value is Level {
  return typeof value === 'string' && (LEVELS as readonly string[]).includes(value);
}

/** Whether `value` is one of the audit stages. */
export function isStage(value: unknown): value is Stage {
  return typeof value === 'string' && (STAGES as readonly string[]).includes(value);
}

/** Stages deduplicated and in request order, so output never depends on input order. */
export function canonicalStages(stages: Iterable<Stage>): Stage[] {
  const present = new Set(stages);
  return STAGES.filter((stage) => present.has(stage));
}

/** Whether `value` is a JSON object (not null, not an array). */
export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
