// The CRD schemas against sinkFromResource (src/sinks/spec.ts), by resources generated from the
// schemas themselves: what the apiserver would store (OpenAPI validation, defaulting and the CEL
// rules, evaluated here by hand) the operator turns into a sink, with every enum value and
// default carried through; and what the operator accepts, the OpenAPI schema accepts too.
// Pure: starts no process.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { STAGES } from '../../../src/audit/types.ts';
import { type SinkSettings, SinkSpecError, sinkFromResource } from '../../../src/sinks/spec.ts';
import { SELECTABLE_FIELDS, TAG_NAMES } from '../../../src/outputs/influxdb/schema.ts';
import { INFLUX_DEFAULTS } from '../../../src/outputs/influxdb/spec.ts';
import { THROTTLE_DEFAULTS } from '../../../src/outputs/webhook/spec.ts';
import type { Sink } from '../../../src/sinks/types.ts';
import {
  nodeAt,
  samples,
  type Schema,
  schemaOf,
  validate,
  walkSchema,
  withDefaults,
} from '../../support/crd-schema.ts';
import { VALID_RESOURCES } from '../../support/valid-resources.ts';
import { mutate, mutations } from './json-mutation.ts';

const KINDS = ['AuditSink', 'AuditPipeline'] as const;
type Kind = (typeof KINDS)[number];

/** The operator's settings: a destination is required, as the CRDs' CEL rule requires one. */
const OPERATOR: SinkSettings = { clusterWideNamespaces: ['kube-audit'], requireDestination: true };

const schemas: Record<Kind, Schema> = {
  AuditSink: schemaOf('AuditSink'),
  AuditPipeline: schemaOf('AuditPipeline'),
};

type Json = Record<string, unknown>;
const isObject = (value: unknown): value is Json =>
  typeof value === 'object' && value !== null && !Array.isArray(value);
const has = (object: Json, key: string) => object[key] !== undefined && object[key] !== null;

// --- Generating resources from the schema -------------------------------------------------------

/** A string matching `pattern` with a length the schema allows. */
function patternString(schema: Schema): fc.Arbitrary<string> {
  const pattern = new RegExp(schema.pattern ?? '', 'u');
  return fc
    .stringMatching(pattern, { size: 'small' })
    .filter((s) => validate(schema, s).length === 0);
}

// PEM with the marker the caBundle CEL rule looks for, or without, to exercise the rule.
const caBundle = fc
  .tuple(fc.string({ maxLength: 8 }), fc.boolean(), fc.string({ maxLength: 8 }))
  .map(([before, marker, after]) =>
    Buffer.from(`${before}${marker ? '-----BEGIN CERTIFICATE-----\n' : ''}${after}`).toString(
      'base64',
    ),
  );

/**
 * URLs of DNS hosts in every spelling the pattern allows. The URL pattern itself also admits
 * hosts that are no host (`http://<`, `http://%0`, `http://.0`) and hosts with a numeric label
 * that the WHATWG parser takes for a bad IPv4 address (`http://a.0`, `http://08`), all of which
 * the operator refuses as "not a URL"; generating from the pattern would find only that.
 */
const httpUrl = fc
  .tuple(
    fc.constantFrom('http', 'https', 'HTTPS', 'hTtP'),
    fc.stringMatching(/^[a-z]([-a-z0-9]{0,6}[a-z0-9])?(\.[a-z][a-z0-9]{0,4}){0,2}$/),
    fc.constantFrom('', ':1', ':8086', ':65535'),
    fc.constantFrom('', '/', '/api/v2/write', '/in?tenant=a', '?org=a&b=c@d', '/%20'),
  )
  .map(([scheme, host, port, rest]) => `${scheme}://${host}${port}${rest}`);

/** An arbitrary of the values `schema` describes; `path` as in walkSchema (`.spec.influxdb`). */
function arbitraryOf(schema: Schema, path: string): fc.Arbitrary<unknown> {
  if (schema.enum !== undefined) return fc.constantFrom(...schema.enum);
  if (path === '.spec.influxdb.url' || path === '.spec.webhook.clientConfig.url') return httpUrl;
  switch (schema.type) {
    case 'object': {
      if (schema['x-kubernetes-preserve-unknown-fields'] === true) {
        return fc.dictionary(fc.string({ maxLength: 6 }), fc.jsonValue({ maxDepth: 1 }), {
          maxKeys: 2,
        });
      }
      if (typeof schema.additionalProperties === 'object') {
        const key =
          path === '.spec.influxdb.staticTags'
            ? fc.oneof(fc.stringMatching(/^[A-Za-z_][A-Za-z0-9_.-]{0,8}$/), reservedTagName)
            : fc.string({ maxLength: 8 });
        return fc.dictionary(key, arbitraryOf(schema.additionalProperties, `${path}.*`), {
          maxKeys: Math.min(schema.maxProperties ?? 3, 3),
        });
      }
      const properties = Object.entries(schema.properties ?? {}).filter(
        ([key]) => !(path === '' && (key === 'status' || key === 'metadata')),
      );
      return fc.record(
        Object.fromEntries(properties.map(([key, s]) => [key, arbitraryOf(s, `${path}.${key}`)])),
        { requiredKeys: (schema.required ?? []).filter((k) => k !== 'metadata') },
      );
    }
    case 'array': {
      const items =
        schema.items === undefined ? fc.jsonValue() : arbitraryOf(schema.items, `${path}[*]`);
      const constraints = {
        minLength: schema.minItems ?? 0,
        maxLength: Math.min(schema.maxItems ?? 3, 3),
      };
      return schema['x-kubernetes-list-type'] === 'set'
        ? fc.uniqueArray(items, { ...constraints, selector: (v) => JSON.stringify(v) })
        : fc.array(items, constraints);
    }
    case 'string':
      if (schema.format === 'byte') return caBundle;
      if (schema.pattern !== undefined) return patternString(schema);
      return fc.string({
        minLength: schema.minLength ?? 0,
        maxLength: Math.min(schema.maxLength ?? 10, 10),
      });
    case 'integer': {
      const min = schema.minimum ?? -1_000;
      const max = schema.maximum ?? 1_000;
      return fc.oneof(fc.constantFrom(min, max), fc.integer({ min, max }));
    }
    case 'number':
      return fc.double({ noNaN: true });
    case 'boolean':
      return fc.boolean();
    case undefined:
      break;
  }
  return fc.jsonValue({ maxDepth: 1 });
}

/** Names the CEL rule of staticTags forbids, read from the rule itself. */
const RESERVED_TAG_NAMES: readonly string[] = (() => {
  const rules = nodeAt(schemas.AuditSink, 'spec.influxdb.staticTags')?.['x-kubernetes-validations'];
  const rule = rules?.find((r) => r.rule.includes(' in ['))?.rule ?? '';
  return [...rule.matchAll(/'([^']+)'/g)].map((m) => m[1] as string);
})();
const reservedTagName = fc.constantFrom(...RESERVED_TAG_NAMES);

const dnsName = fc.stringMatching(/^[a-z0-9]([-a-z0-9]{0,10}[a-z0-9])?$/);

/** A resource of `kind` as the schema describes it, before defaulting. */
function resourceOf(kind: Kind): fc.Arbitrary<Json> {
  return fc
    .record({
      body: arbitraryOf(schemas[kind], ''),
      name: dnsName,
      namespace: fc.oneof(dnsName, fc.constant('kube-audit')),
    })
    .map(({ body, name, namespace }) => ({
      ...(body as Json),
      apiVersion: 'kube-audit.dev/v1alpha1',
      kind,
      metadata: kind === 'AuditSink' ? { name } : { name, namespace },
    }));
}

// --- The CEL rules, by hand ---------------------------------------------------------------------

const NS_PER: Readonly<Record<string, bigint>> = {
  ns: 1n,
  us: 1_000n,
  µs: 1_000n,
  μs: 1_000n,
  ms: 1_000_000n,
  s: 1_000_000_000n,
  m: 60_000_000_000n,
  h: 3_600_000_000_000n,
  d: 86_400_000_000_000n,
  w: 604_800_000_000_000n,
};
const MAX_GO_DURATION = 2n ** 63n - 1n;

/**
 * Go's time.ParseDuration in nanoseconds, undefined when invalid; with `operator`, as the operator
 * parses durations instead: d and w too, and no limit of 2^63 - 1 ns (about 292 years).
 */
function goDuration(text: string, operator: boolean): bigint | undefined {
  const body = text.startsWith('+') ? text.slice(1) : text;
  if (body === '0') return 0n;
  const units = operator ? 'ns|us|µs|μs|ms|s|m|h|d|w' : 'ns|us|µs|μs|ms|s|m|h';
  const part = new RegExp(`(\\d*)(?:\\.(\\d*))?(${units})`, 'uy');
  let ns = 0n;
  let at = 0;
  while (at < body.length) {
    part.lastIndex = at;
    const m = part.exec(body);
    if (m === null || (m[1] === '' && (m[2] ?? '') === '')) return undefined;
    const unit = NS_PER[m[3] as string] as bigint;
    const fraction = m[2] ?? '';
    ns += BigInt(m[1] === '' ? '0' : (m[1] as string)) * unit;
    if (fraction !== '') ns += (BigInt(fraction) * unit) / 10n ** BigInt(fraction.length);
    at = part.lastIndex;
  }
  return body === '' || (!operator && ns > MAX_GO_DURATION) ? undefined : ns;
}

const CEL_DURATION = /^\+?(0|((\d+(\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h))+)$/u;
const HOUR_NS = 3_600_000_000_000n;
const MS_NS = 1_000_000n;

/** The paths whose x-kubernetes-validations rule refuses `resource` (defaults applied). */
function celErrors(resource: Json): string[] {
  const errors: string[] = [];
  const spec = resource.spec as Json;
  const webhook = isObject(spec.webhook) ? spec.webhook : undefined;
  if (!has(spec, 'influxdb') && !(webhook !== undefined && has(webhook, 'clientConfig'))) {
    errors.push('spec');
  }
  const policy = spec.policy as Json;
  if (resource.kind === 'AuditSink') {
    const stages = policy.stages as unknown[] | undefined;
    if (policy.level !== 'None' && (stages === undefined || stages.length === 0)) {
      errors.push('spec.policy.stages');
    }
  } else {
    if (has(policy, 'kind') && !has(policy, 'apiVersion')) errors.push('spec.policy.apiVersion');
    (policy.rules as Json[]).forEach((rule, i) => {
      const size = (key: string) => (rule[key] as unknown[] | undefined)?.length ?? 0;
      if (size('nonResourceURLs') > 0 && (size('resources') > 0 || size('namespaces') > 0)) {
        errors.push(`spec.policy.rules[${i}].nonResourceURLs`);
      }
      ((rule.resources as Json[] | undefined) ?? []).forEach((gr, j) => {
        const count = (key: string) => (gr[key] as unknown[] | undefined)?.length ?? 0;
        if (count('resourceNames') > 0 && count('resources') === 0) {
          errors.push(`spec.policy.rules[${i}].resources[${j}].resourceNames`);
        }
      });
    });
    const receiver = spec.receiver as Json | undefined;
    if (receiver !== undefined && has(receiver, 'tlsSecretName') && !has(receiver, 'port')) {
      errors.push('spec.receiver.tlsSecretName');
    }
  }
  if (webhook !== undefined) {
    if (has(webhook, 'throttle') && !has(webhook, 'clientConfig')) {
      errors.push('spec.webhook.clientConfig');
    }
    const cc = webhook.clientConfig as Json | undefined;
    if (cc !== undefined) {
      if (has(cc, 'url') === has(cc, 'service')) errors.push('spec.webhook.clientConfig');
      if (typeof cc.caBundle === 'string') {
        // CEL's string(bytes) fails on bytes that are not UTF-8.
        let text: string | undefined;
        try {
          text = new TextDecoder('utf-8', { fatal: true }).decode(
            Buffer.from(cc.caBundle, 'base64'),
          );
        } catch {
          text = undefined;
        }
        if (text?.includes('-----BEGIN CERTIFICATE-----') !== true) {
          errors.push('spec.webhook.clientConfig.caBundle');
        }
      }
    }
  }
  const influx = spec.influxdb as Json | undefined;
  if (influx !== undefined) {
    if (has(influx, 'retention') && influx.createBucket !== true) {
      errors.push('spec.influxdb.retention');
    }
    const retention = influx.retention;
    if (typeof retention === 'string' && CEL_DURATION.test(retention)) {
      const ns = goDuration(retention, false);
      if (ns === undefined || (ns !== 0n && ns < HOUR_NS)) errors.push('spec.influxdb.retention');
    }
    const flush = influx.flushInterval;
    if (typeof flush === 'string' && CEL_DURATION.test(flush)) {
      const ns = goDuration(flush, false);
      if (ns === undefined || ns < 10n * MS_NS || ns > HOUR_NS) {
        errors.push('spec.influxdb.flushInterval');
      }
    }
    if (Array.isArray(influx.fields)) {
      const tags: readonly unknown[] = Array.isArray(influx.tags) ? influx.tags : TAG_NAMES;
      if (influx.fields.some((field) => tags.includes(field))) errors.push('spec.influxdb.fields');
    }
    for (const key of Object.keys(isObject(influx.staticTags) ? influx.staticTags : {})) {
      if (!/^[A-Za-z_][A-Za-z0-9_.-]*$/.test(key) || RESERVED_TAG_NAMES.includes(key)) {
        errors.push(`spec.influxdb.staticTags[${JSON.stringify(key)}]`);
      }
    }
  }
  return errors;
}

/**
 * Whether a duration CEL evaluates is past Go's limit: duration() then fails, so the apiserver
 * refuses the resource, while the operator takes it (`retention: 70000000000s`, 2,218 years).
 */
function beyondGoDurations(resource: Json): boolean {
  const influx = (resource.spec as Json).influxdb as Json | undefined;
  return [influx?.retention, influx?.flushInterval].some(
    (text) =>
      typeof text === 'string' &&
      CEL_DURATION.test(text) &&
      goDuration(text, false) === undefined &&
      goDuration(text, true) !== undefined,
  );
}

/**
 * The CRDs leave durations in days and weeks to the operator (CEL durations have neither): the
 * paths the operator refuses for bounds alone.
 */
function operatorOnlyDurationErrors(resource: Json): string[] {
  const influx = (resource.spec as Json).influxdb as Json | undefined;
  if (influx === undefined) return [];
  const errors: string[] = [];
  const retention = influx.retention;
  if (typeof retention === 'string' && !CEL_DURATION.test(retention)) {
    const ns = goDuration(retention, true);
    if (ns === undefined || (ns !== 0n && ns < HOUR_NS)) errors.push('spec.influxdb.retention');
  }
  const flush = influx.flushInterval;
  if (typeof flush === 'string' && !CEL_DURATION.test(flush)) {
    const ns = goDuration(flush, true);
    if (ns === undefined || ns < 10n * MS_NS || ns > HOUR_NS) {
      errors.push('spec.influxdb.flushInterval');
    }
  }
  return errors;
}

/** The keys of a field path: `spec.influxdb.staticTags["a.b"]` → spec, influxdb, staticTags, a.b. */
function keysOf(path: string): (string | number)[] {
  return [...path.matchAll(/([A-Za-z]+)|\[(\d+)\]|\[("(?:[^"\\]|\\.)*")\]/g)].map((m) =>
    m[1] !== undefined
      ? m[1]
      : m[2] !== undefined
        ? Number(m[2])
        : (JSON.parse(m[3] as string) as string),
  );
}

/** The object holding the field at `path` and the field's key; undefined once removed. */
function parentAt(resource: Json, path: string): [Json, string | number] | undefined {
  const keys = keysOf(path);
  let node: unknown = resource;
  for (const key of keys.slice(0, -1)) {
    if (typeof node !== 'object' || node === null) return undefined;
    node = (node as Record<string | number, unknown>)[key];
  }
  return typeof node === 'object' && node !== null
    ? [node as Json, keys[keys.length - 1] as string | number]
    : undefined;
}

/**
 * `resource` changed, by removing fields, until the CEL rules accept it; undefined when it names
 * no destination. Most resources generated from the schema break some rule, so without this the
 * accepted ones would be too rare to test.
 */
function satisfyingCel(resource: Json, schema: Schema): Json | undefined {
  let fixed = structuredClone(resource);
  for (let round = 0; round < 6; round++) {
    const errors = celErrors(fixed);
    if (errors.length === 0) return fixed;
    for (const path of errors) {
      if (path === 'spec') return undefined;
      const found = parentAt(fixed, path);
      if (found === undefined) continue;
      const [parent, key] = found;
      if (path === 'spec.policy.stages') parent[key] = ['ResponseComplete'];
      else if (path === 'spec.policy.apiVersion') delete parent.kind;
      else if (path === 'spec.webhook.clientConfig') {
        const cc = parent.clientConfig as Json | undefined;
        if (cc === undefined) delete parent.throttle;
        else if (has(cc, 'url') && has(cc, 'service')) delete cc.service;
        else delete parent.clientConfig;
      } else delete parent[key];
    }
    fixed = withDefaults(schema, fixed) as Json;
  }
  return undefined;
}

// --- What a stored resource becomes -------------------------------------------------------------

/** Checks that every enum value and default of `resource` arrived in `sink` unchanged. */
function expectCarriedThrough(resource: Json, sink: Sink): void {
  const spec = resource.spec as Json;
  const policy = spec.policy as Json;
  if (resource.kind === 'AuditSink') {
    expect(sink.policy.rules).toEqual([{ level: policy.level }]);
    const kept = (policy.stages as string[] | undefined) ?? [];
    const omitted = STAGES.filter((s) => !kept.includes(s));
    expect(sink.policy.omitStages ?? []).toEqual(
      policy.level === 'None' || omitted.length === STAGES.length ? [] : omitted,
    );
  } else {
    const rules = policy.rules as Json[];
    expect(sink.policy.rules.map((r) => r.level)).toEqual(rules.map((r) => r.level));
    expect(sink.policy.rules.map((r) => r.omitStages)).toEqual(rules.map((r) => r.omitStages));
    expect(sink.policy.omitStages).toEqual(policy.omitStages);
  }
  const influx = spec.influxdb as Json | undefined;
  if (influx === undefined) expect(sink.influxdb).toBeUndefined();
  else {
    const tags = (influx.tags as string[] | undefined) ?? TAG_NAMES;
    const flush = goDuration(influx.flushInterval as string, true) as bigint;
    expect(sink.influxdb).toMatchObject({
      url: influx.url,
      org: influx.org,
      bucket: influx.bucket,
      measurement: influx.measurement,
      batchSize: influx.batchSize,
      flushIntervalMs: Number(flush) / 1e6,
      createBucket: influx.createBucket ?? false,
      tags: TAG_NAMES.filter((t) => tags.includes(t)),
      staticTags: influx.staticTags ?? {},
    });
    const fields = influx.fields as string[] | undefined;
    expect(sink.influxdb?.fields).toEqual(
      fields === undefined ? undefined : SELECTABLE_FIELDS.filter((f) => fields.includes(f)),
    );
    // The defaults the schema writes are the operator's own.
    if (influx.measurement === INFLUX_DEFAULTS.measurement) {
      expect(sink.influxdb?.measurement).toBe(INFLUX_DEFAULTS.measurement);
    }
  }
  const cc = (spec.webhook as Json | undefined)?.clientConfig as Json | undefined;
  if (cc === undefined) expect(sink.webhook).toBeUndefined();
  else {
    const throttle = ((spec.webhook as Json).throttle as Json | undefined) ?? {};
    expect(sink.webhook?.qps).toBe(throttle.qps ?? THROTTLE_DEFAULTS.qps);
    expect(sink.webhook?.burst).toBe(throttle.burst ?? THROTTLE_DEFAULTS.burst);
    if (isObject(cc.service)) {
      const s = cc.service as { name: string; namespace: string; port: number; path?: string };
      expect(sink.webhook?.url).toBe(
        `https://${s.name}.${s.namespace}.svc:${s.port}${s.path ?? ''}`,
      );
    } else expect(sink.webhook?.url).toBe(cc.url);
  }
}

/** The problems of a refused resource, or the sink. */
function build(resource: unknown): Sink | readonly string[] {
  try {
    return sinkFromResource(resource, OPERATOR);
  } catch (err) {
    if (err instanceof SinkSpecError) return err.problems;
    throw err;
  }
}

/** `path=value` for every enum value the schema lists, status aside. */
function enumValuesOf(schema: Schema): Set<string> {
  const values = new Set<string>();
  walkSchema(schema, (node, path) => {
    if (path.startsWith('.status')) return;
    for (const value of node.enum ?? []) values.add(`${path}=${JSON.stringify(value)}`);
  });
  return values;
}

/** Adds `path=value` for every enum-typed value in `value`, walking it with its schema. */
function collectEnumValues(schema: Schema, value: unknown, seen: Set<string>, path = ''): void {
  if (schema.enum !== undefined) seen.add(`${path}=${JSON.stringify(value)}`);
  if (Array.isArray(value) && schema.items !== undefined) {
    for (const item of value) collectEnumValues(schema.items, item, seen, `${path}[*]`);
  } else if (isObject(value)) {
    for (const [key, child] of Object.entries(value)) {
      const property = schema.properties?.[key];
      if (property !== undefined) collectEnumValues(property, child, seen, `${path}.${key}`);
    }
  }
}

// --- Properties ---------------------------------------------------------------------------------

describe.each(KINDS)('%s generated from its CRD schema', (kind) => {
  const schema = schemas[kind];
  /** Generated, defaulted as the apiserver defaults, and valid against the OpenAPI schema. */
  const stored = resourceOf(kind)
    .map((resource) => withDefaults(schema, resource) as Json)
    .filter((resource) => validate(schema, resource).length === 0);

  /** Stored, and changed to satisfy the CEL rules as well. */
  const accepted = stored
    .map((resource) => satisfyingCel(resource, schema))
    .filter((resource): resource is Json => resource !== undefined);

  // Durations in days or weeks are the exception: the CRDs leave their bounds to the operator.
  it('becomes a sink when the CEL rules accept it, carrying every enum value and default', () => {
    let sinks = 0;
    const seen = new Set<string>();
    fc.assert(
      fc.property(accepted, (resource) => {
        expect(validate(schema, resource)).toEqual([]);
        const expectedRefusals = operatorOnlyDurationErrors(resource);
        const outcome = build(resource);
        if (expectedRefusals.length > 0) {
          expect(Array.isArray(outcome)).toBe(true);
          const paths = (outcome as readonly string[]).map((p) => p.split(': ')[0]);
          expect(paths).toEqual(expectedRefusals);
          return;
        }
        if (Array.isArray(outcome)) throw new Error(`refused: ${outcome.join('; ')}`);
        sinks++;
        expectCarriedThrough(resource, outcome as Sink);
        collectEnumValues(schema, resource, seen);
      }),
      { numRuns: 500 },
    );
    expect(sinks).toBeGreaterThan(300);
    // Every level, stage, tag name and policy apiVersion reached a sink at least once.
    expect([...enumValuesOf(schema)].filter((v) => !seen.has(v))).toEqual([]);
  });

  it('is refused by the operator when a CEL rule refuses it, naming that field or its parent', () => {
    fc.assert(
      fc.property(stored, (resource) => {
        const cel = celErrors(resource);
        fc.pre(cel.length > 0 && !beyondGoDurations(resource));
        const outcome = build(resource);
        if (!Array.isArray(outcome)) throw new Error(`accepted; CEL refuses ${cel.join(', ')}`);
        // The operator stops at a clientConfig with both url and service; the apiserver goes on.
        const paths = (outcome as readonly string[]).map((p) => p.split(': ')[0] as string);
        const named = cel.some((c) => paths.some((p) => c === p || c.startsWith(`${p}.`)));
        expect(named, `CEL: ${cel.join(', ')}; operator: ${paths.join(', ')}`).toBe(true);
      }),
      { numRuns: 300 },
    );
  });
});

/**
 * Fields the operator checks less strictly than the schema: the apiserver refuses these values
 * before the operator sees them; only standalone mode, which reads files, can meet them.
 */
const LOOSER_IN_THE_OPERATOR: ReadonlySet<string> = new Set([
  // A pasted Policy document's metadata is ignored, whatever it holds.
  'spec.policy.metadata',
  // Any non-empty name: the Service reference becomes a URL without a check of its own.
  'spec.webhook.clientConfig.service.namespace',
  'spec.webhook.clientConfig.service.name',
  // Any string: the name is taken as it is written.
  'spec.receiver.tlsSecretName',
]);

describe('what sinkFromResource accepts', () => {
  const base = fc.constantFrom(
    ...VALID_RESOURCES.map((r) => r.manifest),
    ...samples()
      .map((s) => s.resource)
      .filter((r) => r.kind !== 'Secret'),
  );

  it('passes the OpenAPI schema of its kind, unknown fields and looser fields aside', () => {
    fc.assert(
      fc.property(base, mutations, (manifest, edits) => {
        const resource = mutate(manifest, edits);
        const outcome = build(resource);
        if (Array.isArray(outcome)) return;
        const kind = (resource as Json).kind as Kind;
        const invalid = validate(schemas[kind], resource).filter(
          (e) => e.kind === 'invalid' && !LOOSER_IN_THE_OPERATOR.has(e.path),
        );
        expect(invalid).toEqual([]);
      }),
      { numRuns: 1_000 },
    );
  });
});
