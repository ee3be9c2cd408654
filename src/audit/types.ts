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

/**
 * How one field of the Event model is declared: its JSON type and whether it must be present.
 * {@link EVENT_MODEL} is the one declaration of the model: `parse.ts` checks every received event
 * against it, and the TypeScript types below are derived from it, so a field that code can read
 * through {@link AuditEvent} is a field that parsing has checked.
 */
export type FieldDecl =
  /** A string; `required` means present and not empty. */
  | { readonly type: 'string'; readonly required?: true }
  /** One of `values`. */
  | { readonly type: 'enum'; readonly values: readonly string[]; readonly required: true }
  /**
   * An RFC 3339 timestamp as Go's `time.Parse` reads it; `pointTime` means it becomes the time of
   * the stored point and must lie in {@link POINT_TIME_RANGE}.
   */
  | { readonly type: 'timestamp'; readonly required?: true; readonly pointTime?: true }
  /** An integer in Go's int32 range. */
  | { readonly type: 'int32' }
  /** An array of strings. */
  | { readonly type: 'strings' }
  /** An object whose values are strings. */
  | { readonly type: 'stringMap' }
  /** An object whose values are arrays of strings. */
  | { readonly type: 'stringsMap' }
  /** An object with declared fields; fields not declared are kept as sent and never read. */
  | { readonly type: 'object'; readonly fields: FieldDecls; readonly required?: true }
  /** Any JSON value, kept opaque (request and response bodies). */
  | { readonly type: 'json' };

/** The declared fields of an object, by name. */
export type FieldDecls = { readonly [name: string]: FieldDecl };

/** `authentication.k8s.io/v1` UserInfo as carried by an audit event. */
const USER_INFO = {
  username: { type: 'string' },
  uid: { type: 'string' },
  groups: { type: 'strings' },
  extra: { type: 'stringsMap' },
} as const satisfies FieldDecls;

/**
 * The model of one audit event (`audit.k8s.io/v1` Event): field names, types and optionality as
 * upstream `k8s.io/apiserver/pkg/apis/audit/v1/types.go` declares them, in its order. Fields of
 * the sent JSON not declared here are kept as sent (the spool and the webhook output forward
 * them) but never read; anything that reads a field declares it here first.
 */
export const EVENT_MODEL = {
  level: { type: 'enum', values: LEVELS, required: true },
  auditID: { type: 'string', required: true },
  stage: { type: 'enum', values: STAGES, required: true },
  requestURI: { type: 'string', required: true },
  verb: { type: 'string', required: true },
  user: { type: 'object', fields: USER_INFO, required: true },
  impersonatedUser: { type: 'object', fields: USER_INFO },
  sourceIPs: { type: 'strings' },
  userAgent: { type: 'string' },
  objectRef: {
    type: 'object',
    fields: {
      resource: { type: 'string' },
      namespace: { type: 'string' },
      name: { type: 'string' },
      uid: { type: 'string' },
      apiGroup: { type: 'string' },
      apiVersion: { type: 'string' },
      resourceVersion: { type: 'string' },
      subresource: { type: 'string' },
    },
  },
  // A metav1.Status: the fields of it that are plain values (`details` is not read).
  responseStatus: {
    type: 'object',
    fields: {
      status: { type: 'string' },
      message: { type: 'string' },
      reason: { type: 'string' },
      code: { type: 'int32' },
    },
  },
  requestObject: { type: 'json' },
  responseObject: { type: 'json' },
  requestReceivedTimestamp: { type: 'timestamp' },
  stageTimestamp: { type: 'timestamp', required: true, pointTime: true },
  annotations: { type: 'stringMap' },
} as const satisfies FieldDecls;

/** The TypeScript type of a value declared by `D`. */
export type DeclaredType<D extends FieldDecl> = D extends {
  readonly type: 'enum';
  readonly values: readonly (infer V)[];
}
  ? V
  : D extends { readonly type: 'string' | 'timestamp' }
    ? string
    : D extends { readonly type: 'int32' }
      ? number
      : D extends { readonly type: 'strings' }
        ? string[]
        : D extends { readonly type: 'stringMap' }
          ? Record<string, string>
          : D extends { readonly type: 'stringsMap' }
            ? Record<string, string[]>
            : D extends { readonly type: 'object'; readonly fields: infer F extends FieldDecls }
              ? DeclaredObject<F>
              : JsonValue;

/** The TypeScript type of an object with the declared fields `F`; undeclared ones are absent. */
export type DeclaredObject<F extends FieldDecls> = Flatten<
  {
    -readonly [K in keyof F as F[K] extends { readonly required: true } ? K : never]: DeclaredType<
      F[K]
    >;
  } & {
    -readonly [K in keyof F as F[K] extends { readonly required: true } ? never : K]?: DeclaredType<
      F[K]
    >;
  }
>;

// One object type instead of an intersection, for readable types in editors and errors.
type Flatten<T> = { [K in keyof T]: T[K] };

/** `authentication.k8s.io/v1` UserInfo as carried by an audit event. */
export type UserInfo = DeclaredObject<typeof USER_INFO>;

/** The object a resource request was about. */
export type ObjectReference = DeclaredObject<typeof EVENT_MODEL.objectRef.fields>;

/** A `metav1.Status`, as recorded in `responseStatus` (the fields the operator reads). */
export type ResponseStatus = DeclaredObject<typeof EVENT_MODEL.responseStatus.fields>;

/** One audit event (`audit.k8s.io/v1` Event), as {@link EVENT_MODEL} declares it. */
export type AuditEvent = DeclaredObject<typeof EVENT_MODEL>;

/**
 * The instants a point time (`stageTimestamp`) may hold, in microseconds since the epoch: what
 * InfluxDB, and the line-protocol files made for it, can store. InfluxDB stores time as int64 nanoseconds and refuses the lowest
 * two and the highest value of that range (`models.MinNanoTime`, `MaxNanoTime`: from
 * 1677-09-21T00:12:43.145224194Z to 2262-04-11T23:47:16.854775806Z); the encoder writes the
 * microsecond times 1,000 plus a slot of up to 999 ns (docs/influxdb-schema.md, "Timestamp").
 * So the first microsecond is the first whose 0 ns slot fits, and the last the last whose 999 ns
 * slot fits.
 */
export const POINT_TIME_RANGE = Object.freeze({
  earliestMicros: -9_223_372_036_854_775n,
  latestMicros: 9_223_372_036_854_774n,
  /** The earliest accepted timestamp, as RFC 3339. */
  earliest: '1677-09-21T00:12:43.145225Z',
  /** The last accepted instant, as RFC 3339 with nanoseconds. */
  latest: '2262-04-11T23:47:16.854774999Z',
});

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
