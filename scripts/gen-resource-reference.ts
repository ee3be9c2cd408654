/**
 * Renders docs/resource-reference.md from the CRD schemas of crds/ (themselves generated from
 * src/sinks/crds.ts); `npm run gen:crds` (scripts/gen-crds.ts) writes the page with the CRDs:
 * one list per resource with every field's path, type, whether it is required, its default, its
 * allowed values and its description, then the cross-field (CEL) rules and the printer columns.
 *
 * test/unit/resource-reference.test.ts fails when the committed page differs from the output.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { format, resolveConfig } from 'prettier';
import { parse } from 'yaml';

/** Where the page is written, relative to the repository root. */
export const REFERENCE_PATH = 'docs/resource-reference.md';

/** The CRD files, in the order the page shows them. */
const CRD_FILES = [
  'crds/auditsinks.kube-audit.dev.yaml',
  'crds/auditpipelines.kube-audit.dev.yaml',
];

const ROOT = new URL('../', import.meta.url);

/** The part of an OpenAPI v3 schema the CRDs use. */
interface Schema {
  type?: string;
  format?: string;
  description?: string;
  properties?: Record<string, Schema>;
  additionalProperties?: Schema;
  items?: Schema;
  required?: string[];
  enum?: unknown[];
  default?: unknown;
  minimum?: number;
  maximum?: number;
  minLength?: number;
  maxLength?: number;
  minItems?: number;
  maxItems?: number;
  maxProperties?: number;
  pattern?: string;
  'x-kubernetes-preserve-unknown-fields'?: boolean;
  'x-kubernetes-list-type'?: string;
  'x-kubernetes-list-map-keys'?: string[];
  'x-kubernetes-validations'?: { rule: string; message?: string; fieldPath?: string }[];
}

interface PrinterColumn {
  name: string;
  type: string;
  description?: string;
  jsonPath: string;
  priority?: number;
}

interface Crd {
  spec: {
    group: string;
    scope: 'Cluster' | 'Namespaced';
    names: { kind: string; plural: string; shortNames?: string[]; categories?: string[] };
    versions: {
      name: string;
      schema: { openAPIV3Schema: Schema };
      additionalPrinterColumns?: PrinterColumn[];
    }[];
  };
}

/** One field of a resource. */
interface FieldRow {
  readonly path: string;
  readonly type: string;
  readonly required: boolean;
  readonly defaultValue: string;
  readonly values: string;
  readonly description: string;
}

/** One cross-field rule: where it applies and what it says. */
interface RuleRow {
  readonly path: string;
  readonly message: string;
}

const code = (s: string) => (s.includes('`') ? `\`\` ${s} \`\`` : `\`${s}\``);
const oneLine = (s: string) => s.replace(/\s+/g, ' ').trim();
/** Schema prose on one line, with the characters Markdown would take for markup escaped. */
const prose = (s: string) =>
  oneLine(s).replace(/[*<>]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])/g, (c) => `\\${c}`);

function typeOf(schema: Schema): string {
  if (schema['x-kubernetes-preserve-unknown-fields'] === true && schema.properties === undefined) {
    return 'object (any fields)';
  }
  if (schema.type === 'array') {
    const list = schema['x-kubernetes-list-type'];
    const items = schema.items === undefined ? 'any' : typeOf(schema.items);
    return `${list === 'set' ? 'set' : list === 'map' ? 'map list' : 'array'} of ${items}`;
  }
  if (schema.type === 'object' && schema.additionalProperties !== undefined) {
    return `map of ${typeOf(schema.additionalProperties)}`;
  }
  const type = schema.type ?? 'any';
  return schema.format === undefined ? type : `${type} (${schema.format})`;
}

/** Enum, bounds, length and pattern, as one line. */
function valuesOf(schema: Schema): string {
  const parts: string[] = [];
  const target = schema.type === 'array' && schema.items !== undefined ? schema.items : schema;
  if (target.enum !== undefined) parts.push(target.enum.map((v) => code(String(v))).join(', '));
  if (target.minimum !== undefined && target.maximum !== undefined) {
    parts.push(`${target.minimum} to ${target.maximum}`);
  } else if (target.minimum !== undefined) {
    parts.push(`at least ${target.minimum}`);
  } else if (target.maximum !== undefined) {
    parts.push(`at most ${target.maximum}`);
  }
  if (target.minLength === 1) parts.push('not empty');
  else if (target.minLength !== undefined && target.minLength > 1) {
    parts.push(`at least ${target.minLength} characters`);
  }
  if (target.maxLength !== undefined) parts.push(`at most ${target.maxLength} characters`);
  if (target.pattern !== undefined) parts.push(`pattern ${code(target.pattern)}`);
  if (schema.minItems !== undefined) parts.push(`at least ${schema.minItems} items`);
  if (schema.maxItems !== undefined) parts.push(`at most ${schema.maxItems} items`);
  if (schema.maxProperties !== undefined) parts.push(`at most ${schema.maxProperties} entries`);
  if (schema['x-kubernetes-list-map-keys'] !== undefined) {
    parts.push(`one item per ${schema['x-kubernetes-list-map-keys'].map(code).join(', ')}`);
  }
  return parts.join('; ');
}

/** The rows of `schema` and everything below it, depth first in schema order. */
function walk(
  path: string,
  schema: Schema,
  required: boolean,
  rows: FieldRow[],
  rules: RuleRow[],
): void {
  rows.push({
    path,
    type: typeOf(schema),
    required,
    defaultValue:
      schema.default === undefined
        ? ''
        : code(
            typeof schema.default === 'string' ? schema.default : JSON.stringify(schema.default),
          ),
    values: valuesOf(schema),
    description: schema.description ?? '',
  });
  for (const rule of schema['x-kubernetes-validations'] ?? []) {
    const at = rule.fieldPath === undefined ? path : `${path}${rule.fieldPath}`;
    rules.push({ path: at, message: rule.message ?? rule.rule });
  }
  const children = schema.type === 'array' ? schema.items : schema;
  const prefix = schema.type === 'array' ? `${path}[]` : path;
  if (children === undefined) return;
  if (schema.type === 'array') {
    for (const rule of children['x-kubernetes-validations'] ?? []) {
      const at = rule.fieldPath === undefined ? prefix : `${prefix}${rule.fieldPath}`;
      rules.push({ path: at, message: rule.message ?? rule.rule });
    }
  }
  for (const [name, child] of Object.entries(children.properties ?? {})) {
    walk(`${prefix}.${name}`, child, children.required?.includes(name) ?? false, rows, rules);
  }
  if (children.additionalProperties !== undefined && schema.type !== 'array') {
    const value = children.additionalProperties;
    rows.push({
      path: `${prefix}.<name>`,
      type: typeOf(value),
      required: false,
      defaultValue: '',
      values: valuesOf(value),
      description: value.description ?? '',
    });
  }
}

/** One list item per field: path, then type, required, default and values, then what it is. */
function fieldList(rows: readonly FieldRow[]): string {
  return rows
    .map((r) => {
      const facts = [
        r.type,
        r.required ? '**required**' : '',
        r.defaultValue === '' ? '' : `default ${r.defaultValue}`,
        r.values,
      ].filter((f) => f !== '');
      const description = prose(r.description);
      return `- ${code(r.path)} (${facts.join('; ')})${description === '' ? '' : `: ${description}`}`;
    })
    .join('\n');
}

function renderCrd(file: string, crd: Crd): string {
  const { group, scope, names } = crd.spec;
  const version = crd.spec.versions[0];
  if (version === undefined) throw new Error(`${file}: no version`);
  const root = version.schema.openAPIV3Schema;
  const apiVersion = `${group}/${version.name}`;
  const out: string[] = [];
  out.push(`## ${names.kind}`);
  out.push(
    [
      `\`apiVersion: ${apiVersion}\`, \`kind: ${names.kind}\`;`,
      scope === 'Cluster' ? 'cluster-scoped;' : 'namespaced;',
      `resource \`${names.plural}.${group}\``,
      names.shortNames === undefined
        ? ''
        : `(short name${names.shortNames.length > 1 ? 's' : ''} ${names.shortNames.map(code).join(', ')})`,
      `from [\`${file}\`](../${file}).`,
    ]
      .filter((s) => s !== '')
      .join(' '),
  );
  if (root.description !== undefined) out.push(prose(root.description));
  for (const part of ['spec', 'status'] as const) {
    const schema = root.properties?.[part];
    if (schema === undefined) continue;
    const rows: FieldRow[] = [];
    const rules: RuleRow[] = [];
    walk(part, schema, root.required?.includes(part) ?? false, rows, rules);
    out.push(`### ${names.kind} ${part}`);
    out.push(fieldList(rows));
    if (rules.length > 0) {
      out.push(
        `Checked by the kube-apiserver when the resource is applied (\`x-kubernetes-validations\`):`,
      );
      out.push(rules.map((r) => `- ${code(r.path)}: ${prose(r.message)}`).join('\n'));
    }
  }
  const columns = version.additionalPrinterColumns ?? [];
  if (columns.length > 0) {
    out.push(`### ${names.kind} columns`);
    out.push(
      `What \`kubectl get ${names.plural}.${group}\` shows; the columns of priority 1 need \`-o wide\`.`,
    );
    const lines = ['| column | from | wide only | description |', '| --- | --- | --- | --- |'];
    for (const c of columns) {
      lines.push(
        `| ${c.name} | ${code(c.jsonPath).replaceAll('|', '\\|')} | ${(c.priority ?? 0) > 0 ? 'yes' : ''} | ${prose(c.description ?? '')} |`,
      );
    }
    out.push(lines.join('\n'));
  }
  return out.join('\n\n');
}

/** The page, formatted as the repository's Prettier settings format Markdown. */
export async function renderResourceReference(): Promise<string> {
  const sections = CRD_FILES.map((file) =>
    renderCrd(file, parse(readFileSync(new URL(file, ROOT), 'utf8')) as Crd),
  );
  const page = [
    '# Resource reference',
    '<!-- Generated by scripts/gen-resource-reference.ts from crds/; do not edit by hand. -->',
    [
      'Every field of the two resources of API group `kube-audit.dev`, version `v1alpha1`, as their',
      'CRD schemas declare them. A field is optional unless marked required; a default is filled in',
      'by the kube-apiserver when the resource is stored. What the schema cannot check is checked by',
      'the operator, which reports it in the status conditions (see [crds/README.md](../crds/README.md)).',
      '`[]` in a path stands for every item of a list, `<name>` for every key of a map. Writing',
      'policies: [policy-guide.md](policy-guide.md).',
    ].join('\n'),
    ...sections,
  ].join('\n\n');
  const target = fileURLToPath(new URL(REFERENCE_PATH, ROOT));
  const options = (await resolveConfig(target)) ?? {};
  return format(page, { ...options, filepath: target });
}
