/**
 * Policy evaluation with exactly the semantics of the kube-apiserver's
 * `k8s.io/apiserver/pkg/audit/policy/checker.go` as of 1.36 (which added `group: "*"`): rules top
 * to bottom, first match wins.
 *
 * Pure: a policy is compiled once into sets, then evaluated per request.
 */
import { canonicalStages, levelRank, type Stage } from '../audit/types.ts';
import type { RequestAttributes } from './attributes.ts';
import type { GroupResources, Policy, PolicyRule, RequestAuditConfig } from './types.ts';

interface CompiledGroupResources {
  readonly group: string;
  readonly resources: readonly string[];
  readonly resourceNames: ReadonlySet<string> | null;
}

interface CompiledRule {
  readonly users: ReadonlySet<string> | null;
  readonly userGroups: ReadonlySet<string> | null;
  readonly verbs: ReadonlySet<string> | null;
  readonly namespaces: ReadonlySet<string> | null;
  readonly resources: readonly CompiledGroupResources[];
  readonly nonResourceURLs: readonly string[];
  /** The decision when this rule matches, shared by every request it matches. */
  readonly config: RequestAuditConfig;
}

/** A policy prepared for evaluation. */
export interface CompiledPolicy {
  readonly rules: readonly CompiledRule[];
  /** The decision when no rule matches: level None with the policy's own omissions. */
  readonly fallback: RequestAuditConfig;
}

/** Compiles a validated policy for repeated evaluation. */
export function compilePolicy(policy: Policy): CompiledPolicy {
  const policyOmit = policy.omitStages ?? [];
  const policyOmitManagedFields = policy.omitManagedFields ?? false;
  const rules = policy.rules.map((rule, index) =>
    compileRule(rule, index, policyOmit, policyOmitManagedFields),
  );
  return {
    rules,
    fallback: Object.freeze({
      level: 'None',
      omitStages: Object.freeze(canonicalStages(policyOmit)),
      omitManagedFields: policyOmitManagedFields,
      ruleIndex: -1,
    }),
  };
}

function compileRule(
  rule: PolicyRule,
  index: number,
  policyOmit: readonly Stage[],
  policyOmitManagedFields: boolean,
): CompiledRule {
  return {
    users: setOf(rule.users),
    userGroups: setOf(rule.userGroups),
    verbs: setOf(rule.verbs),
    namespaces: setOf(rule.namespaces),
    resources: (rule.resources ?? []).map(compileGroupResources),
    nonResourceURLs: rule.nonResourceURLs ?? [],
    config: Object.freeze({
      level: rule.level,
      // Upstream unions the policy's omitStages into every rule when the evaluator is built.
      omitStages: Object.freeze(canonicalStages([...policyOmit, ...(rule.omitStages ?? [])])),
      // A rule's own setting wins over the policy's.
      omitManagedFields: rule.omitManagedFields ?? policyOmitManagedFields,
      ruleIndex: index,
    }),
  };
}

function compileGroupResources(gr: GroupResources): CompiledGroupResources {
  return {
    group: gr.group ?? '',
    resources: gr.resources ?? [],
    resourceNames: setOf(gr.resourceNames),
  };
}

// Upstream checks `len(list) > 0`: an empty list is the same as no list.
function setOf(list: readonly string[] | undefined): ReadonlySet<string> | null {
  return list === undefined || list.length === 0 ? null : new Set(list);
}

/**
 * Whether the policy may keep a request or response body of some event: a rule at Request or
 * RequestResponse. When it has none, no event it keeps carries one.
 */
export function keepsBodies(policy: CompiledPolicy): boolean {
  return policy.rules.some((rule) => levelRank(rule.config.level) >= levelRank('Request'));
}

/** Evaluates a compiled policy for one request: the first matching rule's decision. */
export function evaluatePolicy(
  policy: CompiledPolicy,
  attrs: RequestAttributes,
): RequestAuditConfig {
  for (const rule of policy.rules) {
    if (ruleMatches(rule, attrs)) return rule.config;
  }
  return policy.fallback;
}

function ruleMatches(rule: CompiledRule, attrs: RequestAttributes): boolean {
  const user = attrs.user;
  if (rule.users !== null && (user === null || !rule.users.has(user.name))) return false;
  if (rule.userGroups !== null) {
    if (user === null) return false;
    let member = false;
    for (const group of user.groups) {
      if (rule.userGroups.has(group)) {
        member = true;
        break;
      }
    }
    if (!member) return false;
  }
  if (rule.verbs !== null && !rule.verbs.has(attrs.verb)) return false;
  // A rule with namespaces or resources is a resource rule; one with neither but with
  // nonResourceURLs is a non-resource rule; one with none of the three matches both kinds.
  if (rule.namespaces !== null || rule.resources.length > 0) return resourceMatches(rule, attrs);
  if (rule.nonResourceURLs.length > 0) return nonResourceMatches(rule, attrs);
  return true;
}

function resourceMatches(rule: CompiledRule, attrs: RequestAttributes): boolean {
  if (!attrs.resourceRequest) return false;
  // Non-namespaced requests carry the namespace "", which a rule names as "".
  if (rule.namespaces !== null && !rule.namespaces.has(attrs.namespace)) return false;
  if (rule.resources.length === 0) return true;

  const combined =
    attrs.subresource === '' ? attrs.resource : `${attrs.resource}/${attrs.subresource}`;
  for (const gr of rule.resources) {
    // A group matches exactly, or "*" matches every group (kube-apiserver 1.36 and later). The
    // resources below then apply in whichever group the request is, so "*/scale" under "*" is
    // the scale subresource of every resource of every group.
    if (gr.group !== '*' && gr.group !== attrs.apiGroup) continue;
    if (gr.resources.length === 0) return true;
    if (gr.resourceNames !== null && !gr.resourceNames.has(attrs.name)) continue;
    for (const res of gr.resources) {
      if (res === combined || res === '*') return true;
      // "*/scale": the subresource of any resource.
      if (attrs.subresource !== '' && res.startsWith('*/') && attrs.subresource === res.slice(2)) {
        return true;
      }
      // "pods/*": the resource and all its subresources.
      if (res.endsWith('/*') && attrs.resource === res.slice(0, -2)) return true;
    }
  }
  return false;
}

function nonResourceMatches(rule: CompiledRule, attrs: RequestAttributes): boolean {
  if (attrs.resourceRequest) return false;
  for (const spec of rule.nonResourceURLs) {
    if (pathMatches(attrs.path, spec)) return true;
  }
  return false;
}

/**
 * Upstream `pathMatches`: `*`, an exact path, or a prefix ending in `*`. The prefix match is
 * textual, not by segment: `/healthz*` matches `/healthzfoo`.
 */
export function pathMatches(path: string, spec: string): boolean {
  if (spec === '*' || spec === path) return true;
  return spec.endsWith('*') && path.startsWith(trimRight(spec, '*'));
}

// Go's strings.TrimRight takes a cutset: every trailing character found in `cutset` goes, so
// "/logs**" is the prefix "/logs".
function trimRight(s: string, cutset: string): string {
  let end = s.length;
  while (end > 0 && cutset.includes(s.charAt(end - 1))) end--;
  return s.slice(0, end);
}
