// The CRDs under crds/ against the code that reads the resources (src/sinks/spec.ts): the same
// enums, defaults and bounds, structural schemas, samples that become sinks, and invalid manifests
// refused by both with the same field path. CEL rules are only located here; the control-plane
// tests evaluate them on a real kube-apiserver. Pure: starts no process.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { LEVELS, STAGES } from '../../src/audit/types.ts';
import { parseDuration } from '../../src/config/duration.ts';
import { POLICY_API_VERSIONS } from '../../src/policy/load.ts';
import { validatePolicy } from '../../src/policy/validate.ts';
import {
  SINK_API_VERSION,
  type SinkSettings,
  SinkSpecError,
  sinkFromResource,
} from '../../src/sinks/spec.ts';
import { RESERVED_TAG_NAMES, TAG_NAMES } from '../../src/outputs/influxdb/schema.ts';
import { INFLUX_DEFAULTS } from '../../src/outputs/influxdb/spec.ts';
import { THROTTLE_DEFAULTS } from '../../src/outputs/webhook/spec.ts';
import type { Sink } from '../../src/sinks/types.ts';
import {
  type Crd,
  nodeAt,
  readCrd,
  type Schema,
  samples,
  schemaOf,
  validate,
  walkSchema,
  withDefaults,
} from '../support/crd-schema.ts';
import {
  INVALID_RESOURCES,
  type InvalidResource,
  namesField,
} from '../support/invalid-resources.ts';
import { VALID_RESOURCES } from '../support/valid-resources.ts';

/** The operator's settings: its own namespace sees every namespace; a destination is required. */
const OPERATOR: SinkSettings = { clusterWideNamespaces: ['kube-audit'], requireDestination: true };

const KINDS = ['AuditSink', 'AuditPipeline'] as const;
type Kind = (typeof KINDS)[number];

const crds: Record<Kind, Crd> = {
  AuditSink: readCrd('AuditSink'),
  AuditPipeline: readCrd('AuditPipeline'),
};
const schemas: Record<Kind, Schema> = {
  AuditSink: schemaOf('AuditSink'),
  AuditPipeline: schemaOf('AuditPipeline'),
};

/** The schema of a manifest's kind. */
function schemaFor(manifest: Record<string, unknown>): Schema {
  const kind = manifest.kind;
  if (kind !== 'AuditSink' && kind !== 'AuditPipeline')
    throw new Error(`no CRD for ${String(kind)}`);
  return schemas[kind];
}

/** The schema node at a dotted path, failing the test when there is none. */
function node(kind: Kind, path: string): Schema {
  const found = nodeAt(schemas[kind], path);
  if (found === undefined) throw new Error(`${kind}: no schema at ${path}`);
  return found;
}

/** The problems sinkFromResource reports for a resource it refuses. */
function problemsOf(resource: unknown): readonly string[] {
  try {
    sinkFromResource(resource, OPERATOR);
  } catch (err) {
    if (err instanceof SinkSpecError) return err.problems;
    throw err;
  }
  throw new Error('expected the resource to be refused');
}

/** A sink without its compiled policy, which holds functions. */
function shape(sink: Sink): Omit<Sink, 'compiledPolicy'> {
  const { compiledPolicy: _compiled, ...rest } = sink;
  return rest;
}

/** Where the CEL rules report errors: `.spec.policy.rules[*].nonResourceURLs` and so on. */
function celRulePaths(schema: Schema): string[] {
  const paths: string[] = [];
  walkSchema(schema, (n, path) => {
    for (const rule of n['x-kubernetes-validations'] ?? [])
      paths.push(path + (rule.fieldPath ?? ''));
  });
  return paths;
}

/** `spec.policy.rules[0].level` as a schema path: `.spec.policy.rules[*].level`. */
function schemaPath(fieldPath: string): string {
  return `.${fieldPath.replace(/\[\d+\]/g, '[*]').replace(/\["[^"]*"\]$/, '')}`;
}

// Built-in short names of kube-apiserver 1.37 (`kubectl api-resources`): ours must not shadow one.
// prettier-ignore
const BUILT_IN_SHORT_NAMES = [
  'cj', 'cm', 'crd', 'crds', 'cs', 'csr', 'deploy', 'ds', 'ep', 'ev', 'hpa', 'ing', 'ip', 'limits',
  'netpol', 'no', 'ns', 'pc', 'pdb', 'po', 'pv', 'pvc', 'quota', 'rc', 'rs', 'sa', 'sc', 'sts',
  'svc', 'vac',
];

describe('the CRDs', () => {
  it.each(KINDS)('serve %s as kube-audit.dev/v1alpha1, with a status subresource', (kind) => {
    const crd = crds[kind];
    expect(crd.apiVersion).toBe('apiextensions.k8s.io/v1');
    expect(`${crd.spec.group}/${crd.spec.versions[0]?.name}`).toBe(SINK_API_VERSION);
    expect(crd.metadata.name).toBe(`${crd.spec.names.plural}.${crd.spec.group}`);
    expect(crd.spec.names).toMatchObject({ kind, listKind: `${kind}List` });
    expect(crd.spec.names.plural).toBe(`${kind.toLowerCase()}s`);
    expect(crd.spec.names.categories).toEqual(['audit']);
    expect(crd.spec.versions).toHaveLength(1);
    expect(crd.spec.versions[0]).toMatchObject({ served: true, storage: true });
    expect(crd.spec.versions[0]?.subresources).toEqual({ status: {} });
  });

  it('make AuditSink cluster-scoped and AuditPipeline namespaced', () => {
    expect(crds.AuditSink.spec.scope).toBe('Cluster');
    expect(crds.AuditPipeline.spec.scope).toBe('Namespaced');
  });

  it('have short names that shadow no built-in resource and no each other', () => {
    const shortNames = KINDS.flatMap((kind) => crds[kind].spec.names.shortNames ?? []);
    expect(shortNames).toEqual(['aus', 'apl']);
    for (const name of shortNames) expect(BUILT_IN_SHORT_NAMES).not.toContain(name);
  });

  it.each(KINDS)('print Ready, Bucket, Received, Written and Age for %s', (kind) => {
    const columns = crds[kind].spec.versions[0]?.additionalPrinterColumns ?? [];
    const shown = columns.filter((c) => (c.priority ?? 0) === 0).map((c) => c.name);
    expect(shown).toEqual(
      kind === 'AuditSink'
        ? ['Ready', 'Level', 'Bucket', 'Received', 'Written', 'Age']
        : ['Ready', 'Bucket', 'Received', 'Written', 'Age'],
    );
    const ready = columns.find((c) => c.name === 'Ready');
    expect(ready?.jsonPath).toBe('.status.conditions[?(@.type=="Ready")].status');
    for (const column of columns) {
      if (column.name === 'Age' || column.name === 'Ready') continue;
      // Every other column reads a plain field the schema declares, of the column's type.
      const field = nodeAt(schemas[kind], column.jsonPath.slice(1));
      expect(field, column.jsonPath).toBeDefined();
      expect(field?.type).toBe(column.type);
    }
  });

  it('share the destination and status schemas, so the kinds cannot drift apart', () => {
    for (const path of ['spec.influxdb', 'spec.webhook', 'status']) {
      expect(node('AuditPipeline', path), path).toEqual(node('AuditSink', path));
    }
  });
});

describe('the schemas are structural', () => {
  it.each(KINDS)('%s: every node has a type', (kind) => {
    const untyped: string[] = [];
    walkSchema(schemas[kind], (n, path) => {
      if (n.type === undefined) untyped.push(path);
    });
    expect(untyped).toEqual([]);
  });

  it.each(KINDS)('%s: every field has a description for kubectl explain', (kind) => {
    const undescribed: string[] = [];
    walkSchema(schemas[kind], (n, path) => {
      // Array items and map values are described by their field; ObjectMeta by the apiserver.
      if (path.endsWith('[*]') || path === '.metadata') return;
      if ((n.description ?? '').trim() === '') undescribed.push(path);
    });
    expect(undescribed).toEqual([]);
  });

  it.each(KINDS)('%s: keeps unknown fields only in a pasted Policy’s metadata', (kind) => {
    const preserving: string[] = [];
    walkSchema(schemas[kind], (n, path) => {
      if (n['x-kubernetes-preserve-unknown-fields'] === true) preserving.push(path);
    });
    expect(preserving).toEqual(kind === 'AuditPipeline' ? ['.spec.policy.metadata'] : []);
  });

  it.each(KINDS)('%s: list-map keys are required, as the apiserver demands', (kind) => {
    walkSchema(schemas[kind], (n, path) => {
      for (const key of n['x-kubernetes-list-map-keys'] ?? []) {
        expect(n.items?.required, path).toContain(key);
      }
    });
  });

  it.each(KINDS)('%s: every default is valid against its own schema', (kind) => {
    walkSchema(schemas[kind], (n, path) => {
      if (n.default !== undefined) expect(validate(n, n.default), path).toEqual([]);
    });
  });

  it.each(KINDS)('%s: every CEL rule names its error, with a known reason', (kind) => {
    walkSchema(schemas[kind], (n, path) => {
      for (const rule of n['x-kubernetes-validations'] ?? []) {
        expect(rule.message, `${path}: ${rule.rule}`).toBeTruthy();
        if (rule.reason !== undefined) {
          expect(['FieldValueRequired', 'FieldValueForbidden', 'FieldValueInvalid']).toContain(
            rule.reason,
          );
        }
      }
    });
  });
});

describe('the schemas agree with the code', () => {
  it('list the audit levels of src/audit/types.ts', () => {
    expect(node('AuditSink', 'spec.policy.level').enum).toEqual(LEVELS);
    expect(node('AuditPipeline', 'spec.policy.rules').items?.properties?.level?.enum).toEqual(
      LEVELS,
    );
  });

  it('list the audit stages of src/audit/types.ts wherever a stage is named', () => {
    expect(node('AuditSink', 'spec.policy.stages').items?.enum).toEqual(STAGES);
    expect(node('AuditPipeline', 'spec.policy.omitStages').items?.enum).toEqual(STAGES);
    const rule = node('AuditPipeline', 'spec.policy.rules').items;
    expect(rule?.properties?.omitStages?.items?.enum).toEqual(STAGES);
  });

  it('list the policy apiVersions the policy loader accepts', () => {
    expect(node('AuditPipeline', 'spec.policy.apiVersion').enum).toEqual(POLICY_API_VERSIONS);
    expect(node('AuditPipeline', 'spec.policy.kind').enum).toEqual(['Policy']);
  });

  it('list the tag names of src/outputs/influxdb/schema.ts, each at most once', () => {
    const tags = node('AuditSink', 'spec.influxdb.tags');
    expect(tags.items?.enum).toEqual(TAG_NAMES);
    expect(tags['x-kubernetes-list-type']).toBe('set');
  });

  it('default the throttle as THROTTLE_DEFAULTS, and a Service port to 443 as upstream', () => {
    const throttle = node('AuditSink', 'spec.webhook.throttle').properties;
    expect({ qps: throttle?.qps?.default, burst: throttle?.burst?.default }).toEqual(
      THROTTLE_DEFAULTS,
    );
    expect(node('AuditSink', 'spec.webhook.clientConfig.service.port').default).toBe(443);
  });

  it('default the InfluxDB destination as INFLUX_DEFAULTS', () => {
    const influx = node('AuditSink', 'spec.influxdb').properties;
    expect(influx?.measurement?.default).toBe(INFLUX_DEFAULTS.measurement);
    expect(influx?.batchSize?.default).toBe(INFLUX_DEFAULTS.batchSize);
    expect(parseDuration(String(influx?.flushInterval?.default))).toBe(
      INFLUX_DEFAULTS.flushIntervalMs,
    );
  });

  it('refuse as static tags the names the operator refuses, and only those', () => {
    const rules = node('AuditSink', 'spec.influxdb.staticTags')['x-kubernetes-validations'] ?? [];
    const reserved = rules
      .flatMap((r) => [...r.rule.matchAll(/'([A-Za-z_][A-Za-z0-9_]*)'/g)].map((m) => m[1] ?? ''))
      .sort();
    expect(reserved).toEqual([...RESERVED_TAG_NAMES].sort());
    expect(RESERVED_TAG_NAMES).toEqual(expect.arrayContaining([...TAG_NAMES]));
    for (const name of reserved) {
      const manifest = {
        apiVersion: SINK_API_VERSION,
        kind: 'AuditSink',
        metadata: { name: 'reserved' },
        spec: {
          policy: { level: 'None' },
          influxdb: {
            url: 'http://influxdb:8086',
            org: 'o',
            bucket: 'b',
            staticTags: { [name]: 'x' },
          },
        },
      };
      expect(problemsOf(manifest).join('\n')).toContain(`spec.influxdb.staticTags["${name}"]`);
    }
  });

  it('take the durations the operator parses, in the same syntax', () => {
    const pattern = new RegExp(node('AuditSink', 'spec.influxdb.retention').pattern ?? '', 'u');
    expect(node('AuditSink', 'spec.influxdb.flushInterval').pattern).toBe(pattern.source);
    const durations = fc.stringMatching(/^[+0-9.nsuµμmhdw]{0,8}$/u);
    fc.assert(
      fc.property(durations, (text) => {
        expect(pattern.test(text), text).toBe(typeof parseDuration(text) === 'number');
      }),
      { numRuns: 2_000 },
    );
    for (const text of ['0', '+1h', '1.5h', '.5s', '5.s', '1h30m', '2w', '30d', '10µs', '10μs']) {
      expect(pattern.test(text), text).toBe(true);
    }
  });

  it('take the non-resource URLs upstream validation takes', () => {
    const rule = node('AuditPipeline', 'spec.policy.rules').items;
    const pattern = new RegExp(rule?.properties?.nonResourceURLs?.items?.pattern ?? '', 'u');
    fc.assert(
      fc.property(fc.stringMatching(/^[/*a]{0,5}$/), (url) => {
        const valid = validatePolicy({ rules: [{ level: 'None', nonResourceURLs: [url] }] });
        expect(pattern.test(url), url).toBe(valid.length === 0);
      }),
      { numRuns: 500 },
    );
  });

  it('take the API groups upstream validation takes', () => {
    const rule = node('AuditPipeline', 'spec.policy.rules').items;
    const group = rule?.properties?.resources?.items?.properties?.group;
    const pattern = new RegExp(group?.pattern ?? '', 'u');
    expect(group?.maxLength).toBe(253);
    fc.assert(
      fc.property(fc.stringMatching(/^[a0.\-*A/]{0,6}$/), (name) => {
        const valid = validatePolicy({ rules: [{ level: 'None', resources: [{ group: name }] }] });
        expect(pattern.test(name), name).toBe(valid.length === 0);
      }),
      { numRuns: 1_000 },
    );
  });

  it('take the URLs the operator takes, for every URL of a DNS host', () => {
    const pattern = node('AuditSink', 'spec.influxdb.url').pattern ?? '';
    expect(node('AuditSink', 'spec.webhook.clientConfig.url').pattern).toBe(pattern);
    const url = fc
      .tuple(
        fc.constantFrom('http', 'https', 'HTTPS', 'ftp', 'ws'),
        fc.constantFrom('', 'audit@', 'audit:secret@'),
        fc.stringMatching(/^[a-z][a-z0-9-]{0,4}(\.[a-z][a-z0-9-]{0,4}){0,2}$/),
        fc.constantFrom('', ':', ':8086'),
        fc.constantFrom('', '/', '/api/v2', '/a@b', '/%20'),
        fc.constantFrom('', '?', '?org=a&b=c@d'),
        fc.constantFrom('', '#events'),
      )
      .map((parts) => `${parts[0]}://${parts.slice(1).join('')}`);
    fc.assert(
      fc.property(url, (text) => {
        expect(new RegExp(pattern, 'u').test(text), text).toBe(acceptsInfluxUrl(text));
      }),
      { numRuns: 2_000 },
    );
  });

  it('refuse a few URL spellings the operator would take, none of them meant', () => {
    const pattern = new RegExp(node('AuditSink', 'spec.influxdb.url').pattern ?? '', 'u');
    // WHATWG URL parsing repairs these; a manifest should not rely on that.
    for (const text of [
      'http:influxdb:8086',
      'http://influxdb/a b',
      'http://influxdb#',
      ' http://influxdb',
    ]) {
      expect(acceptsInfluxUrl(text), text).toBe(true);
      expect(pattern.test(text), text).toBe(false);
    }
  });
});

/** Whether the operator takes `url` as an InfluxDB URL. */
function acceptsInfluxUrl(url: string): boolean {
  const manifest = {
    apiVersion: SINK_API_VERSION,
    kind: 'AuditSink',
    metadata: { name: 'url' },
    spec: { policy: { level: 'None' }, influxdb: { url, org: 'o', bucket: 'b' } },
  };
  try {
    sinkFromResource(manifest, OPERATOR);
    return true;
  } catch (err) {
    if (err instanceof SinkSpecError) return false;
    throw err;
  }
}

describe('the samples', () => {
  const all = samples();
  const sinks = all.filter(({ resource }) => resource.kind !== 'Secret');

  it('hold two AuditSinks, an AuditPipeline and the token Secrets they reference', () => {
    expect(all.map(({ resource }) => resource.kind).sort()).toEqual([
      'AuditPipeline',
      'AuditSink',
      'AuditSink',
      'Secret',
      'Secret',
      'Secret',
    ]);
  });

  it.each(sinks.map((s) => [`${s.file}: ${String(s.resource.kind)}`, s.resource] as const))(
    '%s is valid against its CRD',
    (_name, resource) => {
      expect(validate(schemaFor(resource), resource)).toEqual([]);
    },
  );

  it.each(sinks.map((s) => [`${s.file}: ${String(s.resource.kind)}`, s.resource] as const))(
    '%s becomes a sink without warnings, the same with the apiserver’s defaults applied',
    (_name, resource) => {
      const sink = sinkFromResource(resource, OPERATOR);
      expect(sink.warnings).toEqual([]);
      const defaulted = sinkFromResource(withDefaults(schemaFor(resource), resource), OPERATOR);
      expect(shape(defaulted)).toEqual(shape(sink));
    },
  );

  it('reference token Secrets and keys that the samples hold, in the right namespace', () => {
    type Secret = { metadata?: { name?: string; namespace?: string }; stringData?: object };
    const secrets = all
      .filter(({ resource }) => resource.kind === 'Secret')
      .map((s) => s.resource as Secret);
    for (const { resource } of sinks) {
      const sink = sinkFromResource(resource, OPERATOR);
      // An AuditSink's Secret is in the operator's namespace.
      const namespace = sink.ref.kind === 'AuditSink' ? 'kube-audit' : sink.ref.namespace;
      const refs = [sink.influxdb?.tokenSecretRef, sink.receiver?.tokenSecretRef];
      for (const ref of refs) {
        if (ref === undefined) continue;
        const secret = secrets.find(
          (s) => s.metadata?.name === ref.name && s.metadata?.namespace === namespace,
        );
        expect(secret, `${sink.key}: Secret ${namespace}/${ref.name}`).toBeDefined();
        expect(Object.keys(secret?.stringData ?? {})).toContain(ref.key);
      }
    }
    expect(sinks.some(({ resource }) => sinkFromResource(resource, OPERATOR).receiver)).toBe(true);
  });

  it('migrate a removed-API manifest by its apiVersion only: no field it did not have', () => {
    const legacy = all.find(({ file }) => file === 'auditsink-legacy-webhook.yaml')?.resource;
    const spec = legacy?.spec as Record<string, Record<string, unknown>>;
    expect(Object.keys(spec).sort()).toEqual(['policy', 'webhook']);
    expect(Object.keys(spec.webhook ?? {}).sort()).toEqual(['clientConfig', 'throttle']);
    expect(sinkFromResource(legacy, OPERATOR).webhook).toMatchObject({ qps: 10, burst: 15 });
  });
});

describe('valid manifests at the edges', () => {
  it.each(VALID_RESOURCES.map((c) => [c.name, c] as const))('%s: both accept it', (_name, c) => {
    expect(validate(schemaFor(c.manifest), c.manifest)).toEqual([]);
    const sink = sinkFromResource(c.manifest, OPERATOR);
    const defaulted = sinkFromResource(withDefaults(schemaFor(c.manifest), c.manifest), OPERATOR);
    expect(shape(defaulted)).toEqual(shape(sink));
  });
});

describe('invalid manifests', () => {
  it('have unique names, so a real apiserver can take them all', () => {
    const names = INVALID_RESOURCES.map((c) => JSON.stringify(c.manifest.metadata));
    expect(new Set(names).size).toBe(names.length);
  });

  it.each(INVALID_RESOURCES.map((c) => [c.name, c] as const))(
    '%s: the operator refuses it, naming the field',
    (_name, c) => {
      const problems = problemsOf(c.manifest);
      expect(
        problems.some((p) => namesField(p, c.path)),
        `${c.path} in ${problems.join('; ')}`,
      ).toBe(true);
    },
  );

  const schemaSide = (c: InvalidResource) => validate(schemaFor(c.manifest), c.manifest);

  it.each(
    INVALID_RESOURCES.filter((c) => c.caughtBy === 'schema').map((c) => [c.name, c] as const),
  )('%s: the CRD schema refuses it, naming the field', (_name, c) => {
    const paths = schemaSide(c).map((e) => (e.kind === 'invalid' ? e.path : ''));
    expect(paths).toContain(c.apiserverPath ?? c.path);
  });

  it.each(
    INVALID_RESOURCES.filter((c) => c.caughtBy === 'unknown-field').map(
      (c) => [c.name, c] as const,
    ),
  )('%s: strict field validation refuses the undeclared field', (_name, c) => {
    expect(schemaSide(c)).toEqual([
      { path: c.path, kind: 'unknown-field', detail: 'unknown field' },
    ]);
  });

  it.each(INVALID_RESOURCES.filter((c) => c.caughtBy === 'cel').map((c) => [c.name, c] as const))(
    '%s: passes the OpenAPI keywords and meets a CEL rule at the field',
    (_name, c) => {
      expect(schemaSide(c)).toEqual([]);
      expect(celRulePaths(schemaFor(c.manifest))).toContain(schemaPath(c.path));
    },
  );

  it.each(
    INVALID_RESOURCES.filter((c) => c.caughtBy === 'operator').map((c) => [c.name, c] as const),
  )('%s: passes the OpenAPI keywords, left to the operator’s status', (_name, c) => {
    expect(schemaSide(c)).toEqual([]);
  });
});
