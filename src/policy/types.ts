/**
 * The `audit.k8s.io/v1` Policy model (upstream `k8s.io/apiserver/pkg/apis/audit/v1/types.go`).
 */
import type { Level, Stage } from '../audit/types.ts';

/** Resources of one API group that a rule applies to. */
export interface GroupResources {
  /** API group; `""` is the core group, `"*"` every group (kube-apiserver 1.36 and later). */
  group?: string;
  // Resources ("pods"), subresources ("pods/log"), "*", "*/scale" or "pods/*"; empty means all.
  resources?: string[];
  /** Object names; empty means all. */
  resourceNames?: string[];
}

/** One rule of a policy: when it matches, how much to record. */
export interface PolicyRule {
  level: Level;
  users?: string[];
  userGroups?: string[];
  verbs?: string[];
  resources?: GroupResources[];
  /** Namespaces; `""` matches non-namespaced requests. */
  namespaces?: string[];
  /** Non-resource URL paths, exact or with a trailing `*`. */
  nonResourceURLs?: string[];
  omitStages?: Stage[];
  omitManagedFields?: boolean;
}

/** An audit policy: rules evaluated top to bottom, first match wins. */
export interface Policy {
  rules: PolicyRule[];
  omitStages?: Stage[];
  omitManagedFields?: boolean;
}

/** What a policy decides for one request (upstream `RequestAuditConfig`). */
export interface RequestAuditConfig {
  /** The rule's level, or None when no rule matched. */
  readonly level: Level;
  /** Stages to omit: the policy's and the matched rule's, deduplicated, in request order. */
  readonly omitStages: readonly Stage[];
  readonly omitManagedFields: boolean;
  /** Index of the matched rule, -1 when none matched. */
  readonly ruleIndex: number;
}
