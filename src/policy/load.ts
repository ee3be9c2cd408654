/**
 * Loading audit policies from YAML or JSON text, as upstream `pkg/audit/policy/reader.go` does:
 * `audit.k8s.io/v1` (and the structurally identical, deprecated `v1beta1`), `kind` Policy or
 * absent, validation, at least one rule. Unknown fields are ignored as upstream's lenient fallback
 * ignores them, but reported as warnings: a mis-indented key silently widens a rule.
 *
 * A file may hold one Policy, several YAML documents, or a `List` of Policies. Upstream reads only
 * the first YAML document and ignores the rest; here every document counts, and `loadPolicy`
 * refuses a file with more than one rather than dropping policies silently.
 */
import { parseAllDocuments } from 'yaml';
import { isRecord, type Level, type Stage } from '../audit/types.ts';
import type { GroupResources, Policy, PolicyRule } from './types.ts';
import { formatFieldError, validatePolicy } from './validate.ts';

/** The policy apiVersions accepted; v1beta1 has the same fields as v1. */
export const POLICY_API_VERSIONS = ['audit.k8s.io/v1', 'audit.k8s.io/v1beta1'] as const;

/** A policy file that cannot be used; `problems` has one line per error. */
export class PolicyLoadError extends Error {
  override readonly name = 'PolicyLoadError';
  readonly code = 'INVALID_POLICY';
  /** One message per problem, each naming its field path. */
  readonly problems: readonly string[];

  constructor(source: string, problems: readonly string[]) {
    super(`${source}: invalid audit policy:\n  ${problems.join('\n  ')}`);
    this.problems = problems;
  }
}

/** A loaded policy and where it came from: `file`, `file#2` (second document), `file[0]` (List item). */
export interface LoadedPolicy {
  readonly source: string;
  readonly policy: Policy;
  /** Things accepted but probably not meant, such as unknown fields; each names its field path. */
  readonly warnings: readonly string[];
}

/**
 * Loads every policy in `text` (YAML or JSON), validating each.
 *
 * @throws PolicyLoadError listing every problem found, with `source#n` prefixes when the text
 *   holds several policies.
 */
export function loadPolicies(text: string, source = 'policy'): LoadedPolicy[] {
  const values = parseDocuments(text, source);
  // Where each policy sits: `document 2: ` for the second YAML document, `items[1].` in a List.
  const entries: { source: string; value: unknown; prefix: string }[] = [];
  values.forEach((value, d) => {
    const doc =
      values.length > 1
        ? { source: `${source}#${d + 1}`, prefix: `document ${d + 1}: ` }
        : { source, prefix: '' };
    if (isRecord(value) && value.kind === 'List') {
      if (!Array.isArray(value.items)) {
        throw new PolicyLoadError(source, [
          `${doc.prefix}items: Required value: a List needs an array of Policies`,
        ]);
      }
      value.items.forEach((item, i) => {
        entries.push({
          source: `${doc.source}[${i}]`,
          value: item,
          prefix: `${doc.prefix}items[${i}].`,
        });
      });
    } else {
      entries.push({ source: doc.source, value, prefix: doc.prefix });
    }
  });
  if (entries.length === 0)
    throw new PolicyLoadError(source, ['no Policy found: the file is empty']);

  const problems: string[] = [];
  const loaded: LoadedPolicy[] = [];
  for (const entry of entries) {
    const decoded = decodePolicyBody(entry.value, true);
    for (const e of decoded.problems) problems.push(`${entry.prefix}${e}`);
    if (decoded.problems.length === 0) {
      const warnings = decoded.warnings.map((w) => `${entry.prefix}${w}`);
      loaded.push({ source: entry.source, policy: decoded.policy, warnings });
    }
  }
  if (problems.length > 0) throw new PolicyLoadError(source, problems);
  return loaded;
}

/**
 * Loads exactly one policy from `text`.
 *
 * @throws PolicyLoadError when the text is invalid or holds more or fewer than one policy.
 */
export function loadPolicy(text: string, source = 'policy'): LoadedPolicy {
  const loaded = loadPolicies(text, source);
  if (loaded.length !== 1) {
    throw new PolicyLoadError(source, [`expected one Policy, found ${loaded.length}`]);
  }
  // biome-ignore lint/style/noNonNullAssertion: length checked above.
  return loaded[0]!;
}

// A problem from the first line of a parser message. An unquoted wildcard (`group: *`,
// `resources: [*/status]`) is a YAML alias, not a string, and the parser's message about the alias
// says nothing about wildcards: for an alias error, the problem says how to write one.
function malformed(message: string, alias: boolean): string {
  const first = message.split('\n')[0] ?? '';
  return alias
    ? `malformed YAML/JSON: ${first.replace(/:$/, '')}: a value starting with * is a YAML alias; quote a wildcard, e.g. "*" or "*/status"`
    : `malformed YAML/JSON: ${first}`;
}

function parseDocuments(text: string, source: string): unknown[] {
  // JSON is YAML 1.2, so one parser serves both and reports positions for either.
  // Duplicate keys: the last wins, as in the apiserver's lenient decoding.
  const docs = parseAllDocuments(text, { prettyErrors: true, uniqueKeys: false });
  if (!Array.isArray(docs)) return []; // an empty text parses to an empty stream
  const problems: string[] = [];
  const values: unknown[] = [];
  for (const doc of docs) {
    for (const err of doc.errors) {
      problems.push(malformed(err.message, err.code === 'BAD_ALIAS'));
    }
    if (doc.errors.length === 0) {
      let value: unknown;
      try {
        // Aliases are resolved here: an unknown anchor or an alias bomb throws.
        value = doc.toJS({ maxAliasCount: 100 });
      } catch (err) {
        // The parser throws a ReferenceError for an alias whose anchor does not exist.
        problems.push(malformed((err as Error).message, err instanceof ReferenceError));
        continue;
      }
      // A document holding only comments or `---` is no document.
      if (value !== null && value !== undefined) values.push(value);
    }
  }
  if (problems.length > 0) throw new PolicyLoadError(source, problems);
  return values;
}

/** A decoded policy body, with what is wrong with it and what is merely suspicious. */
export interface DecodedPolicy {
  readonly policy: Policy;
  /** Decoding and validation errors, each naming its field path; empty when usable. */
  readonly problems: string[];
  readonly warnings: string[];
}

const POLICY_FIELDS = new Set([
  'apiVersion',
  'kind',
  'metadata',
  'rules',
  'omitStages',
  'omitManagedFields',
]);
const RULE_FIELDS = new Set([
  'level',
  'users',
  'userGroups',
  'verbs',
  'resources',
  'namespaces',
  'nonResourceURLs',
  'omitStages',
  'omitManagedFields',
]);
const GROUP_RESOURCES_FIELDS = new Set(['group', 'resources', 'resourceNames']);

/**
 * Decodes and validates a policy given as a parsed value: a whole `audit.k8s.io/v1` Policy
 * document when `document` is true, or just its body (`rules`, `omitStages`, `omitManagedFields`,
 * optionally with the document's `apiVersion` and `kind`), as an AuditPipeline's `spec.policy`
 * carries it.
 */
export function decodePolicyBody(value: unknown, document = false): DecodedPolicy {
  const errors: string[] = [];
  const warnings: string[] = [];
  const policy: Policy = { rules: [] };
  if (!isRecord(value)) {
    errors.push(`expected a Policy object, got ${describe(value)}`);
    return { policy, problems: errors, warnings };
  }
  // A body may still be a pasted Policy document: then its type must be right too.
  if (document || value.apiVersion !== undefined || value.kind !== undefined) {
    checkTypeMeta(value, errors, warnings);
  }
  unknownFields(value, POLICY_FIELDS, '', warnings);
  const omitStages = stringList(value.omitStages, 'omitStages', errors);
  if (omitStages !== undefined) policy.omitStages = omitStages as Stage[];
  const omitManagedFields = bool(value.omitManagedFields, 'omitManagedFields', errors);
  if (omitManagedFields !== undefined) policy.omitManagedFields = omitManagedFields;

  if (value.rules !== undefined && value.rules !== null) {
    if (!Array.isArray(value.rules)) {
      errors.push(`rules: expected an array, got ${describe(value.rules)}`);
    } else {
      value.rules.forEach((raw, i) => {
        const rule = decodeRule(raw, `rules[${i}]`, errors, warnings);
        if (rule !== undefined) policy.rules.push(rule);
      });
    }
  }
  if (errors.length > 0) return { policy, problems: errors, warnings };
  const problems = validatePolicy(policy).map(formatFieldError);
  if (problems.length === 0 && policy.rules.length === 0) {
    // reader.go: "loaded illegal policy with 0 rules", checked after validation.
    problems.push('rules: Required value: a policy needs at least one rule');
  }
  return { policy, problems, warnings };
}

function checkTypeMeta(value: Record<string, unknown>, errors: string[], warnings: string[]) {
  if (!(POLICY_API_VERSIONS as readonly unknown[]).includes(value.apiVersion)) {
    errors.push(
      value.apiVersion === undefined
        ? 'apiVersion: Required value: "audit.k8s.io/v1"'
        : `apiVersion: Unsupported value: ${JSON.stringify(value.apiVersion)}: supported values: ${POLICY_API_VERSIONS.map((v) => `"${v}"`).join(', ')}`,
    );
  } else if (value.apiVersion !== 'audit.k8s.io/v1') {
    warnings.push(
      `apiVersion: ${JSON.stringify(value.apiVersion)} is deprecated and refused by current kube-apiservers: use "audit.k8s.io/v1"`,
    );
  }
  // Upstream decodes into a Policy, so an absent kind defaults to Policy.
  if (value.kind !== undefined && value.kind !== 'Policy') {
    errors.push(
      `kind: Unsupported value: ${JSON.stringify(value.kind)}: supported values: "Policy"`,
    );
  }
}

function decodeRule(
  raw: unknown,
  path: string,
  errors: string[],
  warnings: string[],
): PolicyRule | undefined {
  if (!isRecord(raw)) {
    errors.push(`${path}: expected a rule object, got ${describe(raw)}`);
    return undefined;
  }
  unknownFields(raw, RULE_FIELDS, path, warnings);
  let level: Level | undefined;
  if (raw.level !== undefined && raw.level !== null && typeof raw.level !== 'string') {
    errors.push(`${path}.level: expected a string, got ${describe(raw.level)}`);
  } else {
    level = (raw.level ?? undefined) as Level | undefined;
  }
  // Validation reports a missing level as "Required value"; keep the rule so it can.
  const rule = { level } as PolicyRule;
  for (const key of [
    'users',
    'userGroups',
    'verbs',
    'namespaces',
    'nonResourceURLs',
    'omitStages',
  ] as const) {
    const list = stringList(raw[key], `${path}.${key}`, errors);
    if (list !== undefined) (rule as unknown as Record<string, string[]>)[key] = list;
  }
  const omitManagedFields = bool(raw.omitManagedFields, `${path}.omitManagedFields`, errors);
  if (omitManagedFields !== undefined) rule.omitManagedFields = omitManagedFields;
  if (raw.resources !== undefined && raw.resources !== null) {
    if (!Array.isArray(raw.resources)) {
      errors.push(`${path}.resources: expected an array, got ${describe(raw.resources)}`);
    } else {
      rule.resources = [];
      raw.resources.forEach((gr, i) => {
        const decoded = decodeGroupResources(gr, `${path}.resources[${i}]`, errors, warnings);
        if (decoded !== undefined) rule.resources?.push(decoded);
      });
    }
  }
  return rule;
}

function decodeGroupResources(
  raw: unknown,
  path: string,
  errors: string[],
  warnings: string[],
): GroupResources | undefined {
  if (!isRecord(raw)) {
    errors.push(`${path}: expected an object, got ${describe(raw)}`);
    return undefined;
  }
  unknownFields(raw, GROUP_RESOURCES_FIELDS, path, warnings);
  const gr: GroupResources = {};
  if (raw.group !== undefined && raw.group !== null) {
    if (typeof raw.group === 'string') gr.group = raw.group;
    else errors.push(`${path}.group: expected a string, got ${describe(raw.group)}`);
  }
  const resources = stringList(raw.resources, `${path}.resources`, errors);
  if (resources !== undefined) gr.resources = resources;
  const resourceNames = stringList(raw.resourceNames, `${path}.resourceNames`, errors);
  if (resourceNames !== undefined) gr.resourceNames = resourceNames;
  return gr;
}

function unknownFields(
  obj: Record<string, unknown>,
  known: ReadonlySet<string>,
  path: string,
  warnings: string[],
) {
  for (const key of Object.keys(obj)) {
    if (!known.has(key)) {
      warnings.push(
        `${path === '' ? '' : `${path}.`}${key}: unknown field, ignored (as the kube-apiserver ignores it)`,
      );
    }
  }
}

function stringList(value: unknown, path: string, errors: string[]): string[] | undefined {
  if (value === undefined || value === null) return undefined;
  if (!Array.isArray(value)) {
    errors.push(`${path}: expected an array of strings, got ${describe(value)}`);
    return undefined;
  }
  const bad = value.findIndex((v) => typeof v !== 'string');
  if (bad !== -1) {
    errors.push(`${path}[${bad}]: expected a string, got ${describe(value[bad])}`);
    return undefined;
  }
  return value as string[];
}

function bool(value: unknown, path: string, errors: string[]): boolean | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'boolean') {
    errors.push(`${path}: expected true or false, got ${describe(value)}`);
    return undefined;
  }
  return value;
}

function describe(value: unknown): string {
  if (value === null || value === undefined) return 'nothing';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object') return 'an object';
  return `${typeof value} ${JSON.stringify(value)}`;
}
