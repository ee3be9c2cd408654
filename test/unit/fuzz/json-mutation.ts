/**
 * Arbitraries for fuzzing the readers of user-written documents: values that are wrong in the ways
 * hand-edited YAML and JSON are wrong, and random edits of a valid document (a field deleted, a
 * value of another type, an unknown key). Shared by the tests of this folder. Pure.
 */
import fc from 'fast-check';

/** The keys and indexes from a document's root to one of its nodes. */
export type JsonPath = readonly (string | number)[];

/** One random edit; `pick` chooses the node, modulo the number of candidates. */
export type Mutation =
  | { readonly op: 'delete'; readonly pick: number }
  | { readonly op: 'replace'; readonly pick: number; readonly value: unknown }
  | { readonly op: 'insert'; readonly pick: number; readonly key: string; readonly value: unknown };

// Deep enough for every real manifest; inserted deep values are not walked into.
const MAX_WALK_DEPTH = 24;

/**
 * Nesting of at most 1,000 levels: deeper values make JSON.stringify overflow the stack, which the
 * crash property of sink-spec.fuzz.test.ts covers on its own.
 */
export const MAX_NESTING = 1_000;

/** Every node below the root with its path; objects and arrays are listed before their children. */
export function nodesOf(value: unknown): { path: JsonPath; value: unknown }[] {
  const out: { path: JsonPath; value: unknown }[] = [];
  const walk = (node: unknown, path: JsonPath) => {
    if (path.length > MAX_WALK_DEPTH) return;
    if (Array.isArray(node)) {
      node.forEach((child, i) => {
        out.push({ path: [...path, i], value: child });
        walk(child, [...path, i]);
      });
    } else if (typeof node === 'object' && node !== null) {
      for (const [key, child] of Object.entries(node)) {
        out.push({ path: [...path, key], value: child });
        walk(child, [...path, key]);
      }
    }
  };
  walk(value, []);
  return out;
}

/** Sets an own property, as JSON.parse does: `__proto__` stays a plain key. */
function setOwn(target: object, key: string | number, value: unknown): void {
  Object.defineProperty(target, key, {
    value,
    enumerable: true,
    writable: true,
    configurable: true,
  });
}

function parentOf(root: unknown, path: JsonPath): unknown {
  let node = root;
  for (const key of path.slice(0, -1)) node = (node as Record<string | number, unknown>)[key];
  return node;
}

/** A copy of `document` with the mutations applied in order. */
export function mutate(document: unknown, mutations: readonly Mutation[]): unknown {
  let root: unknown = structuredClone(document);
  for (const m of mutations) {
    const nodes = nodesOf(root);
    if (m.op === 'insert') {
      const containers = [
        { path: [] as JsonPath, value: root },
        ...nodes.filter((n) => typeof n.value === 'object' && n.value !== null),
      ].filter((n) => typeof n.value === 'object' && n.value !== null);
      const target = containers[m.pick % Math.max(containers.length, 1)];
      if (target === undefined) continue;
      if (Array.isArray(target.value)) target.value.splice(m.pick % 3, 0, m.value);
      else setOwn(target.value as object, m.key, m.value);
      continue;
    }
    const node = nodes[m.pick % Math.max(nodes.length, 1)];
    if (node === undefined) {
      if (m.op === 'replace') root = m.value;
      continue;
    }
    const parent = parentOf(root, node.path) as Record<string | number, unknown> | unknown[];
    const key = node.path[node.path.length - 1] as string | number;
    if (m.op === 'delete') {
      if (Array.isArray(parent)) parent.splice(key as number, 1);
      else delete parent[key];
    } else setOwn(parent, key, m.value);
  }
  return root;
}

/** A value nested `depth` levels deep in arrays or objects. */
export function nested(depth: number, inObject: boolean, leaf: unknown = 'x'): unknown {
  let value = leaf;
  for (let i = 0; i < depth; i++) value = inObject ? { a: value } : [value];
  return value;
}

/** Strings of 1,000 to 65,536 characters: past every maxLength of the CRDs but 512 KiB. */
export const hugeString: fc.Arbitrary<string> = fc
  .tuple(
    fc.oneof(
      fc.constantFrom('a', '9', '1h', '.5', 'é', '😀', '\u0000', '-----BEGIN CERTIFICATE-----'),
      fc.string({ minLength: 1, maxLength: 4, unit: 'binary' }),
    ),
    fc.integer({ min: 1_000, max: 65_536 }),
  )
  .map(([unit, length]) => unit.repeat(Math.ceil(length / unit.length)).slice(0, length));

/** Numbers that break naive range and integer checks. */
export const oddNumber: fc.Arbitrary<number> = fc.oneof(
  fc.constantFrom(
    Number.NaN,
    Number.POSITIVE_INFINITY,
    Number.NEGATIVE_INFINITY,
    -0,
    0,
    1e308,
    -1e308,
    Number.MIN_VALUE,
    Number.MAX_SAFE_INTEGER + 2,
    -1,
    1.5,
    1023,
    1024,
    65_535,
    65_536,
    100_001,
    1_000_001,
  ),
  fc.double(),
  fc.integer(),
);

/** Strings a field of these resources may take or nearly take. */
export const trickyString: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom(
    '',
    ' ',
    '\n',
    '0',
    '+0',
    '1h',
    '.5s',
    '1d',
    '-1h',
    'None',
    'Metadata',
    'RequestResponse',
    'ResponseComplete',
    'audit.k8s.io/v1',
    'kube-audit.dev/v1alpha1',
    '*',
    '/api*',
    '/a*b',
    'http://',
    'https://[::1',
    'https://user:pw@host',
    'https://host#frag',
    'ftp://host',
    '-----BEGIN CERTIFICATE-----',
    '__proto__',
    'constructor',
    'toString',
    'level',
    'sink',
    '\u{1F600}',
    '\uD800',
    'Ｍetadata',
  ),
  fc.string({ unit: 'grapheme', maxLength: 12 }),
  fc.string({ unit: 'binary', maxLength: 12 }),
);

/** A key nobody declared, or one that shadows a prototype property. */
export const unknownKey: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom(
    '__proto__',
    'constructor',
    'toString',
    'hasOwnProperty',
    'valueOf',
    'x-unknown',
    'Level',
    '',
  ),
  fc.string({ maxLength: 10 }),
);

/** A value of any JSON type, biased to the awkward ones. */
export const oddValue: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 3, arbitrary: trickyString },
  { weight: 3, arbitrary: oddNumber },
  { weight: 1, arbitrary: fc.constantFrom(true, false, null, undefined, [], {}) },
  { weight: 1, arbitrary: hugeString },
  {
    weight: 1,
    arbitrary: fc
      .tuple(fc.integer({ min: 2, max: MAX_NESTING }), fc.boolean(), fc.jsonValue({ maxDepth: 1 }))
      .map(([depth, inObject, leaf]) => nested(depth, inObject, leaf)),
  },
  { weight: 2, arbitrary: fc.jsonValue({ maxDepth: 3 }) },
  { weight: 1, arbitrary: fc.array(trickyString, { maxLength: 4 }) },
);

/** One random edit of a document. */
export const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ op: fc.constant('delete' as const), pick: fc.nat() }),
  fc.record({ op: fc.constant('replace' as const), pick: fc.nat(), value: oddValue }),
  fc.record({
    op: fc.constant('insert' as const),
    pick: fc.nat(),
    key: unknownKey,
    value: oddValue,
  }),
);

/** One to four random edits. */
export const mutations: fc.Arbitrary<Mutation[]> = fc.array(mutation, {
  minLength: 1,
  maxLength: 4,
});
