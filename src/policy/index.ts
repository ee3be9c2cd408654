/**
 * The audit policy engine: loading, validation, evaluation with kube-apiserver semantics,
 * enforcement on received events, and superset computation. Pure: no I/O, no clock, no logger.
 */
export { attributesFromEvent, type RequestAttributes, type RequestUser } from './attributes.ts';
export {
  type CompiledPolicy,
  compilePolicy,
  evaluatePolicy,
  keepsBodies,
  pathMatches,
} from './checker.ts';
export {
  applyPolicy,
  type Decision,
  decideLevel,
  enforceLevel,
  type PolicyOutcome,
  withoutManagedFields,
} from './enforce.ts';
export {
  decodePolicyBody,
  type DecodedPolicy,
  type LoadedPolicy,
  loadPolicies,
  loadPolicy,
  PolicyLoadError,
} from './load.ts';
export {
  GROUP_WILDCARD_SINCE,
  type SupersetOptions,
  supersetPolicy,
  usesGroupWildcard,
} from './superset.ts';
export type { GroupResources, Policy, PolicyRule, RequestAuditConfig } from './types.ts';
export { type FieldError, formatFieldError, validatePolicy } from './validate.ts';
