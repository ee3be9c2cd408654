// Fuzzing the audit policy loader and validator (src/policy/load.ts, validate.ts) with fast-check:
// random text, random edits of the example policies, random values and random well-typed
// policies. The loader returns policies or throws its own PolicyLoadError, each problem naming
// the field it is about; the same policy reads the same as YAML, as JSON and as a value.
// Pure: starts no process.
import { readdirSync, readFileSync } from 'node:fs';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { parse, stringify } from 'yaml';
import { isRecord, STAGES } from '../../../src/audit/types.ts';
import {
  decodePolicyBody,
  loadPolicies,
  type LoadedPolicy,
  loadPolicy,
  PolicyLoadError,
} from '../../../src/policy/load.ts';
import type { Policy } from '../../../src/policy/types.ts';
import { formatFieldError, validatePolicy } from '../../../src/policy/validate.ts';
import { mutate, mutations, oddValue, trickyString } from './json-mutation.ts';

const EXAMPLES_DIR = new URL('../../../examples/policies/', import.meta.url);
const EXAMPLES: readonly unknown[] = readdirSync(EXAMPLES_DIR)
  .filter((f) => f.endsWith('.yaml'))
  .sort()
  .map((f) => parse(readFileSync(new URL(f, EXAMPLES_DIR), 'utf8')) as unknown);

/** A field of a policy document: `rules[0].resources[1].group`, `omitStages[2]`. */
const FIELD = String.raw`(?:apiVersion|kind|metadata|rules|omitStages|omitManagedFields|items)(?:\.[A-Za-z]+|\[\d+\])*`;

/** `path: message`, optionally after the document (`document 2: `) or List item it is in. */
const FIELD_PROBLEM = new RegExp(String.raw`^(?:document \d+: )?(?:items\[\d+\]\.)?${FIELD}: \S`);

/** A problem of the whole file or document rather than of one field. */
const FILE_PROBLEM = new RegExp(
  [
    String.raw`^malformed YAML/JSON: `,
    String.raw`^no Policy found: the file is empty$`,
    String.raw`^expected one Policy, found \d+$`,
    // A document that is no object has no field to name.
    String.raw`^(?:document \d+: )?expected a Policy object, got `,
    // A List item that is no object is worded `items[0].expected a Policy object, got number 1`:
    // the path runs into the sentence. Accepted here as it is worded today.
    String.raw`^(?:document \d+: )?items\[\d+\]\.expected a Policy object, got `,
  ].join('|'),
);

/** A warning names its field: `rules[0].levl: unknown field, ignored (…)`, `apiVersion: …`. */
const FIELD_WARNING =
  /^(?:document \d+: )?(?:items\[\d+\]\.)?(?:(?:rules\[\d+\]\.(?:resources\[\d+\]\.)?)?[^]*: unknown field, ignored|apiVersion: )/u;

/**
 * yaml throws a ReferenceError, not a parse error, for an alias without an anchor or one
 * expanding past maxAliasCount; a property below checks that the loader reports it.
 */
function isAliasCrash(err: unknown): boolean {
  return err instanceof ReferenceError && /alias/i.test(err.message);
}

let aliasCrashesSkipped = 0;

type Loaded = { readonly loaded: LoadedPolicy[] } | { readonly problems: readonly string[] };

/** Loads `text`, checking what a loaded policy or a PolicyLoadError must hold. */
function load(text: string, one = false): Loaded | undefined {
  try {
    const loaded = one ? [loadPolicy(text, 'fuzz.yaml')] : loadPolicies(text, 'fuzz.yaml');
    expect(loaded.length).toBeGreaterThan(0);
    for (const { policy, warnings } of loaded) {
      expect(policy.rules.length).toBeGreaterThan(0);
      expect(validatePolicy(policy)).toEqual([]);
      for (const warning of warnings) expect(warning).toMatch(FIELD_WARNING);
    }
    return { loaded };
  } catch (err) {
    if (isAliasCrash(err)) {
      aliasCrashesSkipped++;
      return undefined;
    }
    if (!(err instanceof PolicyLoadError)) throw err;
    expect(err.code).toBe('INVALID_POLICY');
    expect(err.problems.length).toBeGreaterThan(0);
    for (const problem of err.problems) {
      if (!FILE_PROBLEM.test(problem)) expect(problem).toMatch(FIELD_PROBLEM);
    }
    return { problems: err.problems };
  }
}

/** Decodes a value as a whole Policy document or as a pipeline's policy body. */
function expectDecodedWithFieldProblems(value: unknown, document: boolean): void {
  const decoded = decodePolicyBody(value, document);
  if (!isRecord(value)) {
    expect(decoded.problems).toHaveLength(1);
    expect(decoded.problems[0]).toMatch(/^expected a Policy object, got /);
    return;
  }
  for (const problem of decoded.problems) expect(problem).toMatch(FIELD_PROBLEM);
  for (const warning of decoded.warnings) expect(warning).toMatch(FIELD_WARNING);
  if (decoded.problems.length === 0) expect(decoded.policy.rules.length).toBeGreaterThan(0);
}

// Pieces of policy YAML, so random text is often nearly a policy; no alias (`*name`) among them.
const YAML_PIECES = [
  'apiVersion: audit.k8s.io/v1\n',
  'apiVersion: audit.k8s.io/v1beta1\n',
  'kind: Policy\n',
  'kind: List\nitems:\n',
  'rules:\n',
  '- level: None\n',
  '  - level: Metadata\n',
  '    resources:\n',
  '      - group: ""\n',
  '        resources: ["pods/*"]\n',
  'nonResourceURLs: ["/api*"]\n',
  'omitStages: [RequestReceived]\n',
  'omitManagedFields: true\n',
  '---\n',
  '...\n',
  '&a ',
  '!!str ',
  '!!binary ',
  '!!set ',
  '%YAML 1.1\n',
  '<<: ',
  '? ',
  '- ',
  ': ',
  '[',
  ']',
  '{',
  '}',
  ',',
  '"',
  "'",
  '#',
  '|\n',
  '>-\n',
  '\n',
  '  ',
  '\t',
  'null',
  '~',
  '.nan',
  '-.inf',
  '0x1F',
  '1e308',
  'level',
  'RequestResponse',
  '\uFEFF',
  '\u0000',
];

const yamlish = fc
  .array(fc.oneof(fc.constantFrom(...YAML_PIECES), trickyString), { maxLength: 30 })
  .map((pieces) => pieces.join(''));

const randomText = fc.oneof(
  { weight: 3, arbitrary: yamlish },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 200 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'grapheme', maxLength: 200 }) },
  { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 4 }).map((v) => JSON.stringify(v)) },
);

const example = fc.constantFrom(...EXAMPLES);

/** How deeply a value nests arrays and objects. */
function depthOf(value: unknown): number {
  if (typeof value !== 'object' || value === null) return 0;
  let deepest = 0;
  for (const child of Object.values(value)) deepest = Math.max(deepest, depthOf(child));
  return deepest + 1;
}

// yaml's parser and stringifier recurse: somewhere under 1,000 levels the parser reports
// "Maximum call stack size exceeded" as malformed text, so the comparison stays well below.
const MAX_TEXT_DEPTH = 64;

/** An edited example, as it survives JSON: no undefined, no NaN, no -0. */
const editedExample = fc
  .tuple(example, mutations)
  .map(([policy, edits]) => mutate(policy, edits))
  .filter((value) => value !== undefined && depthOf(value) <= MAX_TEXT_DEPTH)
  .map((value) => JSON.parse(JSON.stringify(value)) as unknown);

describe('loading policy text', () => {
  // yaml warns through process.emitWarning when a mapping key is itself a collection (`? [a]`);
  // random text does that often, and the warnings would only flood the test output.
  beforeAll(() => {
    vi.spyOn(process, 'emitWarning').mockImplementation(() => undefined);
  });
  afterAll(() => {
    vi.restoreAllMocks();
  });

  it('loads the example policies without a warning', () => {
    for (const policy of EXAMPLES) {
      const decoded = decodePolicyBody(policy, true);
      expect(decoded.problems).toEqual([]);
      expect(decoded.warnings).toEqual([]);
    }
  });

  it('loads random text or refuses it with a PolicyLoadError naming each field', () => {
    aliasCrashesSkipped = 0;
    fc.assert(
      fc.property(randomText, (text) => {
        load(text);
        load(text, true);
      }),
      { numRuns: 1_000 },
    );
    // Random text rarely starts a node with `*`: the skip must stay the exception.
    expect(aliasCrashesSkipped).toBeLessThan(20);
  });

  // An alias without an anchor (`rules: *x`) or one past maxAliasCount (an alias bomb) makes
  // yaml's toJS throw; the loader reports it as malformed input.
  it('refuses an unresolved or excessive YAML alias with a PolicyLoadError', () => {
    const dangling = fc
      .stringMatching(/^[a-z]{1,8}$/)
      .map((name) => `apiVersion: audit.k8s.io/v1\nrules: *${name}\n`);
    const bomb = fc.integer({ min: 10, max: 12 }).map((fanOut) => {
      const list = (alias: string) => `[${Array.from({ length: fanOut }, () => alias).join(', ')}]`;
      return `a: &a ${list('x')}\nb: &b ${list('*a')}\nc: &c ${list('*b')}\nrules: [{level: None}]\n`;
    });
    fc.assert(
      fc.property(fc.oneof(dangling, bomb), (text) => {
        try {
          loadPolicies(text);
        } catch (err) {
          if (!(err instanceof PolicyLoadError)) throw err;
        }
      }),
      { numRuns: 50 },
    );
  });

  it('reads an edited example the same as a value, as JSON text and as YAML text', () => {
    fc.assert(
      fc.property(editedExample, (value) => {
        const decoded = decodePolicyBody(value, true);
        for (const text of [JSON.stringify(value), stringify(value)]) {
          const outcome = load(text);
          // A List is read item by item, and text of a non-object is checked by load() alone.
          if (outcome === undefined || !isRecord(value) || value.kind === 'List') continue;
          if ('problems' in outcome) expect(outcome.problems).toEqual(decoded.problems);
          else {
            expect(decoded.problems).toEqual([]);
            expect(outcome.loaded.map((l) => l.policy)).toEqual([decoded.policy]);
            expect(outcome.loaded.flatMap((l) => l.warnings)).toEqual(decoded.warnings);
          }
        }
      }),
      { numRuns: 500 },
    );
  });
});

describe('decoding policy values', () => {
  it('decodes an edited example, or names every bad field', () => {
    fc.assert(
      fc.property(
        example.chain((policy) => mutations.map((edits) => mutate(policy, edits))),
        fc.boolean(),
        expectDecodedWithFieldProblems,
      ),
      { numRuns: 1_000 },
    );
  });

  it('decodes any value, or names every bad field', () => {
    const policyLike = fc.record(
      {
        apiVersion: fc.oneof(fc.constant('audit.k8s.io/v1'), oddValue),
        kind: fc.oneof(fc.constant('Policy'), oddValue),
        rules: fc.oneof(
          fc.array(
            fc.oneof(
              fc.dictionary(
                fc.constantFrom(
                  'level',
                  'users',
                  'userGroups',
                  'verbs',
                  'resources',
                  'namespaces',
                  'nonResourceURLs',
                  'omitStages',
                  'omitManagedFields',
                  'levl',
                ),
                fc.oneof(oddValue, fc.array(fc.oneof(trickyString, oddValue), { maxLength: 3 })),
              ),
              oddValue,
            ),
            { maxLength: 5 },
          ),
          oddValue,
        ),
        omitStages: fc.oneof(fc.array(fc.constantFrom(...STAGES, 'Bogus')), oddValue),
        omitManagedFields: fc.oneof(fc.boolean(), oddValue),
      },
      { requiredKeys: [] },
    );
    fc.assert(
      fc.property(
        fc.oneof(fc.anything(), policyLike),
        fc.boolean(),
        expectDecodedWithFieldProblems,
      ),
      { numRuns: 1_000 },
    );
  });
});

describe('validating typed policies', () => {
  const strings = fc.array(trickyString, { maxLength: 3 });
  const policy: fc.Arbitrary<Policy> = fc.record(
    {
      rules: fc.array(
        fc.record(
          {
            level: fc.oneof(
              fc.constantFrom('None', 'Metadata', 'Request', 'RequestResponse'),
              trickyString,
            ),
            users: strings,
            userGroups: strings,
            verbs: strings,
            namespaces: strings,
            nonResourceURLs: strings,
            omitStages: strings,
            omitManagedFields: fc.boolean(),
            resources: fc.array(
              fc.record(
                { group: trickyString, resources: strings, resourceNames: strings },
                { requiredKeys: [] },
              ),
              { maxLength: 3 },
            ),
          },
          { requiredKeys: ['level'] },
        ),
        { maxLength: 4 },
      ),
      omitStages: strings,
      omitManagedFields: fc.boolean(),
    },
    { requiredKeys: ['rules'] },
  ) as fc.Arbitrary<Policy>;

  it('names the field of every problem, in the form upstream prints', () => {
    fc.assert(
      fc.property(policy, (p) => {
        for (const error of validatePolicy(p)) {
          expect(error.field).toMatch(new RegExp(`^${FIELD}$`));
          expect(formatFieldError(error).startsWith(`${error.field}: `)).toBe(true);
        }
      }),
      { numRuns: 1_000 },
    );
  });
});
