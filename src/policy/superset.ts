/**
 * One policy for the kube-apiserver that captures, for every request, at least what each of several
 * sink policies asks for: never less, as little more as is practical.
 *
 * Why this shape: with first-match-wins, concatenating policies would let one policy's rule shadow
 * another's. Ordering every non-None rule by level, highest first, makes the first match the highest
 * level any policy could decide for the request; each sink then trims back to its own decision.
 */
import { canonicalStages, type Level, STAGES, type Stage } from '../audit/types.ts';
import type { GroupResources, Policy, PolicyRule } from './types.ts';

const LEVELS_DESCENDING: readonly Level[] = ['RequestResponse', 'Request', 'Metadata'];

/** The first kube-apiserver release whose audit policies accept `group: "*"`, as [major, minor]. */
export const GROUP_WILDCARD_SINCE: readonly [major: number, minor: number] = [1, 36];

/** What the apiserver that reads the superset accepts. */
export interface SupersetOptions {
  /**
   * Whether it accepts `group: "*"` ({@link GROUP_WILDCARD_SINCE} and later). Releases before
   * refuse to start with such a policy, so without it the superset uses no group wildcard.
   */
  readonly groupWildcard: boolean;
  /**
   * None rules put first, whatever the sink policies say: requests nobody should capture, such
   * as the operator's own leader election. Dropped only where they name no group `"*"` or the
   * apiserver accepts it.
   */
  readonly exclude?: readonly PolicyRule[];
}

/** Whether any rule of `policy` names the group `"*"`. */
export function usesGroupWildcard(policy: Policy): boolean {
  return policy.rules.some((rule) => (rule.resources ?? []).some(isWildcardEntry));
}

/**
 * Computes a superset policy of `policies`.
 *
 * - The `exclude` None rules come first. A None rule of the policies is kept, after them, only
 *   when every policy drops exactly the requests it matches (an identical None rule in every
 *   policy's leading run of None rules).
 * - Every other rule keeps its level; rules are ordered by level, highest first, duplicates and
 *   rules after a catch-all are removed.
 * - Stages and managed fields are omitted only where every policy omits them, for every rule that
 *   can capture anything.
 * - Without `groupWildcard`, a capturing rule that names the group `"*"` loses its resources (and
 *   so matches every group, and non-resource requests too unless it names namespaces), and a None
 *   rule loses its `"*"` entries (or is left out when none remain): wider capture, never less.
 */
export function supersetPolicy(
  policies: readonly Policy[],
  options: SupersetOptions = { groupWildcard: false },
): Policy {
  const capturing: { rule: PolicyRule; omit: Set<Stage>; omitManagedFields: boolean }[] = [];
  for (const policy of policies) {
    for (const rule of policy.rules) {
      if (rule.level === 'None') continue;
      capturing.push({
        rule,
        omit: new Set([...(policy.omitStages ?? []), ...(rule.omitStages ?? [])]),
        omitManagedFields: rule.omitManagedFields ?? policy.omitManagedFields ?? false,
      });
    }
  }

  const rules: PolicyRule[] = [];
  const seen = new Set<string>();
  for (const shared of [...(options.exclude ?? []), ...sharedLeadingNoneRules(policies)]) {
    const rule = options.groupWildcard ? shared : narrowedWithoutGroupWildcard(shared);
    if (rule === undefined) continue;
    const key = criteriaKey(rule);
    if (seen.has(key)) continue;
    seen.add(key);
    rules.push({ ...criteriaOf(rule), level: 'None' });
  }
  let catchAll = false;
  for (const level of LEVELS_DESCENDING) {
    for (const { rule: own } of capturing) {
      if (catchAll) break;
      if (own.level !== level) continue;
      const rule = options.groupWildcard ? own : widenedWithoutGroupWildcard(own);
      const key = criteriaKey(rule);
      // An identical rule earlier in the superset already captures these requests at a level at
      // least as high.
      if (seen.has(key)) continue;
      seen.add(key);
      rules.push({ level, ...criteriaOf(rule) });
      catchAll = isCatchAll(rule);
    }
  }
  if (capturing.length === 0) {
    // Nothing to capture: say so explicitly, as a policy needs at least one rule.
    return { rules: [{ level: 'None' }] };
  }

  const omitStages = STAGES.filter((stage) => capturing.every((c) => c.omit.has(stage)));
  const superset: Policy = { rules };
  if (omitStages.length > 0) superset.omitStages = canonicalStages(omitStages);
  if (capturing.every((c) => c.omitManagedFields)) superset.omitManagedFields = true;
  return superset;
}

function isWildcardEntry(gr: GroupResources): boolean {
  return gr.group === '*';
}

/**
 * A capturing rule that matches at least what `rule` matches, without `group: "*"`. Only a rule
 * without resources matches every group, so the resources go; so do nonResourceURLs, which a rule
 * with resources ignores (validation refuses both together). What remains still selects by user,
 * verb and namespace.
 */
function widenedWithoutGroupWildcard(rule: PolicyRule): PolicyRule {
  if (!(rule.resources ?? []).some(isWildcardEntry)) return rule;
  const { resources: _resources, nonResourceURLs: _urls, ...rest } = rule;
  return rest;
}

/**
 * A None rule that matches at most what `rule` matches, without `group: "*"`: its other entries
 * still match, as any one entry does. Undefined when only wildcard entries were left: a rule with
 * no resources would match every resource request, dropping what some policy keeps.
 */
function narrowedWithoutGroupWildcard(rule: PolicyRule): PolicyRule | undefined {
  const resources = rule.resources ?? [];
  if (!resources.some(isWildcardEntry)) return rule;
  const kept = resources.filter((gr) => !isWildcardEntry(gr));
  return kept.length === 0 ? undefined : { ...rule, resources: kept };
}

/** None rules that appear, with identical criteria, in the leading None run of every policy. */
function sharedLeadingNoneRules(policies: readonly Policy[]): PolicyRule[] {
  const first = policies[0];
  if (first === undefined) return [];
  const leadingKeys = policies.map((policy) => {
    const keys = new Set<string>();
    for (const rule of policy.rules) {
      if (rule.level !== 'None') break;
      keys.add(criteriaKey(rule));
    }
    return keys;
  });
  const shared: PolicyRule[] = [];
  for (const rule of first.rules) {
    if (rule.level !== 'None') break;
    const key = criteriaKey(rule);
    if (leadingKeys.every((keys) => keys.has(key))) shared.push(rule);
  }
  return shared;
}

type Criteria = Omit<PolicyRule, 'level' | 'omitStages' | 'omitManagedFields'>;

/** The matching part of a rule, with empty lists dropped (upstream treats them as absent). */
function criteriaOf(rule: PolicyRule): Criteria {
  const criteria: Criteria = {};
  for (const key of ['users', 'userGroups', 'verbs', 'namespaces', 'nonResourceURLs'] as const) {
    const list = rule[key];
    if (list !== undefined && list.length > 0) criteria[key] = [...list];
  }
  if (rule.resources !== undefined && rule.resources.length > 0) {
    criteria.resources = rule.resources.map((gr) => ({ ...gr }));
  }
  return criteria;
}

function isCatchAll(rule: PolicyRule): boolean {
  return Object.keys(criteriaOf(rule)).length === 0;
}

/** A key equal for two rules exactly when they match the same requests by construction. */
function criteriaKey(rule: PolicyRule): string {
  const sorted = (list: readonly string[] | undefined) =>
    list === undefined ? [] : [...new Set(list)].sort();
  return JSON.stringify([
    sorted(rule.users),
    sorted(rule.userGroups),
    sorted(rule.verbs),
    sorted(rule.namespaces),
    sorted(rule.nonResourceURLs),
    (rule.resources ?? []).map((gr) => [
      gr.group ?? '',
      sorted(gr.resources),
      sorted(gr.resourceNames),
    ]),
  ]);
}
