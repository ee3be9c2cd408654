// The Helm chart's files against the rest of the repository: its CRDs are byte-identical copies of
// crds/ (the single source of truth), its appVersion is the package's version, every value is
// declared in values.schema.json and documented in the chart's README, and the dashboard is valid
// JSON. Rendering and installing are in test/e2e/controlplane/chart.test.ts. Pure: starts no
// process.
import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';

const ROOT = new URL('../../', import.meta.url);
const CHART = new URL('charts/kube-audit-operator/', ROOT);
const CRDS = new URL('crds/', ROOT);
const CHART_CRDS = new URL('crds/', CHART);

const text = (url: URL) => readFileSync(url, 'utf8');
const yamlFiles = (dir: URL) =>
  readdirSync(dir, { withFileTypes: true })
    .filter((entry) => entry.isFile() && entry.name.endsWith('.yaml'))
    .map((entry) => entry.name)
    .sort();

/** The part of a JSON Schema that declares keys. */
interface JsonSchema {
  readonly properties?: Readonly<Record<string, JsonSchema>>;
  readonly additionalProperties?: boolean | JsonSchema;
  readonly $ref?: string;
  readonly definitions?: Readonly<Record<string, JsonSchema>>;
}

/**
 * The keys of values.yaml documented with a `# --` comment, as dotted paths, in file order: the
 * comment sits right above its key, and the key's nesting is its indentation.
 */
function documentedValues(values: string): string[] {
  const paths: string[] = [];
  const stack: { indent: number; key: string }[] = [];
  let documented = false;
  for (const line of values.split('\n')) {
    if (/^\s*# -- /.test(line)) {
      documented = true;
      continue;
    }
    if (/^\s*#/.test(line)) continue;
    const m = /^(\s*)([A-Za-z_][A-Za-z0-9_]*):/.exec(line);
    if (m === null) continue;
    const indent = (m[1] as string).length;
    while (stack.length > 0 && (stack.at(-1) as { indent: number }).indent >= indent) stack.pop();
    stack.push({ indent, key: m[2] as string });
    if (documented) paths.push(stack.map((s) => s.key).join('.'));
    documented = false;
  }
  return paths;
}

/** Every key path of an object, down to values that are not plain non-empty objects. */
function keyPaths(value: unknown, prefix = ''): string[] {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return [];
  return Object.entries(value).flatMap(([key, child]) => {
    const path = prefix === '' ? key : `${prefix}.${key}`;
    return [path, ...keyPaths(child, path)];
  });
}

describe('the chart', () => {
  it('carries byte-identical copies of the CRDs of crds/, and nothing else', () => {
    const sources = yamlFiles(CRDS);
    expect(sources.length).toBeGreaterThan(0);
    // On drift: scripts/sync-chart-crds.sh
    expect(yamlFiles(CHART_CRDS)).toEqual(sources);
    for (const file of sources) {
      expect(
        readFileSync(new URL(file, CHART_CRDS)).equals(readFileSync(new URL(file, CRDS))),
        file,
      ).toBe(true);
    }
  });

  it('has the package’s version as its appVersion', () => {
    const chart = parse(text(new URL('Chart.yaml', CHART))) as Record<string, unknown>;
    const pkg = JSON.parse(text(new URL('package.json', ROOT))) as { version: string };
    expect(chart).toMatchObject({ apiVersion: 'v2', version: '0.1.0', appVersion: pkg.version });
  });

  it('declares every value of values.yaml in values.schema.json', () => {
    const schema = JSON.parse(text(new URL('values.schema.json', CHART))) as JsonSchema;
    const values = parse(text(new URL('values.yaml', CHART))) as unknown;
    const resolve = (s: JsonSchema): JsonSchema =>
      s.$ref === undefined
        ? s
        : resolve(schema.definitions?.[s.$ref.replace('#/definitions/', '')] ?? {});
    const undeclared = keyPaths(values).filter((path) => {
      let node: JsonSchema | undefined = schema;
      for (const key of path.split('.')) {
        const current: JsonSchema = resolve(node ?? {});
        // A free-form map (labels, resources) declares its keys by additionalProperties.
        if (current.properties === undefined) return current.additionalProperties === false;
        node = current.properties[key];
        if (node === undefined) return true;
      }
      return false;
    });
    expect(undeclared).toEqual([]);
  });

  it('documents every value of values.yaml, in a comment and in the README’s table', () => {
    const valuesText = text(new URL('values.yaml', CHART));
    const documented = documentedValues(valuesText);
    const values = parse(valuesText) as Record<string, unknown>;
    // Each top-level key is documented itself or through its children.
    for (const key of Object.keys(values)) {
      expect(
        documented.some((path) => path === key || path.startsWith(`${key}.`)),
        key,
      ).toBe(true);
    }
    const rows = [...text(new URL('README.md', CHART)).matchAll(/^\| `([^`]+)`\s*\|/gm)].map(
      (m) => m[1],
    );
    expect(rows).toEqual(documented);
  });

  it('ships a dashboard that is valid JSON with its title and a panels list', () => {
    const dashboard = JSON.parse(text(new URL('dashboards/kube-audit.json', CHART))) as {
      title: unknown;
      panels: unknown;
    };
    expect(dashboard.title).toBe('Kubernetes audit');
    expect(Array.isArray(dashboard.panels)).toBe(true);
  });
});
