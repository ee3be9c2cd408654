/**
 * Policy validation as upstream `k8s.io/apiserver/pkg/apis/audit/validation/validation.go` of
 * kube-apiserver 1.36 and later (which accepts `group: "*"`), with one improvement: field paths
 * carry the index of the offending entry (`rules[2].resources[0].group`, where upstream says
 * `rules[2].resources.group`).
 */
import { LEVELS, STAGES } from '../audit/types.ts';
import type { Policy, PolicyRule } from './types.ts';

/** Kinds of field error, as upstream `field.ErrorType`. */
export type FieldErrorType = 'Required' | 'Invalid' | 'NotSupported';

/** One problem with one field of a policy. */
export interface FieldError {
  readonly type: FieldErrorType;
  /** Path of the field, e.g. `rules[0].nonResourceURLs[1]`. */
  readonly field: string;
  readonly value?: unknown;
  readonly detail: string;
}

/** Renders a field error as upstream does: `rules[0].level: Required value`. */
export function formatFieldError(error: FieldError): string {
  switch (error.type) {
    case 'Required':
      return `${error.field}: Required value${error.detail === '' ? '' : `: ${error.detail}`}`;
    case 'NotSupported':
      return `${error.field}: Unsupported value: ${JSON.stringify(error.value)}: supported values: ${error.detail}`;
    case 'Invalid':
      return `${error.field}: Invalid value: ${JSON.stringify(error.value)}: ${error.detail}`;
  }
}

/** Validates a policy; returns every error found, empty when the policy is valid. */
export function validatePolicy(policy: Policy): FieldError[] {
  const errors: FieldError[] = [];
  validateOmitStages(policy.omitStages, 'omitStages', errors);
  policy.rules.forEach((rule, i) => {
    validateRule(rule, `rules[${i}]`, errors);
  });
  return errors;
}

function validateRule(rule: PolicyRule, path: string, errors: FieldError[]): void {
  validateLevel(rule.level, `${path}.level`, errors);
  validateNonResourceURLs(rule.nonResourceURLs ?? [], `${path}.nonResourceURLs`, errors);
  validateResources(rule, path, errors);
  validateOmitStages(rule.omitStages, `${path}.omitStages`, errors);
  const nonResource = rule.nonResourceURLs ?? [];
  if (
    nonResource.length > 0 &&
    ((rule.resources?.length ?? 0) > 0 || (rule.namespaces?.length ?? 0) > 0)
  ) {
    errors.push({
      type: 'Invalid',
      field: `${path}.nonResourceURLs`,
      value: nonResource,
      detail: 'rules cannot apply to both regular resources and non-resource URLs',
    });
  }
}

const SUPPORTED_LEVELS = LEVELS.map((l) => `"${l}"`).join(', ');

function validateLevel(level: unknown, path: string, errors: FieldError[]): void {
  if (level === undefined || level === '') {
    errors.push({ type: 'Required', field: path, detail: '' });
  } else if (!(LEVELS as readonly unknown[]).includes(level)) {
    errors.push({ type: 'NotSupported', field: path, value: level, detail: SUPPORTED_LEVELS });
  }
}

function validateNonResourceURLs(
  urls: readonly string[],
  path: string,
  errors: FieldError[],
): void {
  urls.forEach((url, i) => {
    if (url === '*') return;
    if (!url.startsWith('/')) {
      errors.push({
        type: 'Invalid',
        field: `${path}[${i}]`,
        value: url,
        detail: "non-resource URL rules must begin with a '/' character",
      });
    }
    if (url !== '' && url.slice(0, -1).includes('*')) {
      errors.push({
        type: 'Invalid',
        field: `${path}[${i}]`,
        value: url,
        detail: "non-resource URL wildcards '*' must be the final character of the rule",
      });
    }
  });
}

// apimachinery IsDNS1123Subdomain: what an API group name must be.
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const DNS1123_SUBDOMAIN_MAX = 253;

function validateResources(rule: PolicyRule, rulePath: string, errors: FieldError[]): void {
  (rule.resources ?? []).forEach((gr, i) => {
    const path = `${rulePath}.resources[${i}]`;
    const group = gr.group ?? '';
    // The empty string is the core API group; "*" is every group (kube-apiserver 1.36 and later).
    if (group !== '' && group !== '*') {
      const problems: string[] = [];
      if (group.length > DNS1123_SUBDOMAIN_MAX) {
        problems.push(`must be no more than ${DNS1123_SUBDOMAIN_MAX} characters`);
      }
      if (!DNS1123_SUBDOMAIN.test(group)) {
        problems.push(
          "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com'); an API group has no version, e.g. 'rbac.authorization.k8s.io'",
        );
      }
      if (problems.length > 0) {
        errors.push({
          type: 'Invalid',
          field: `${path}.group`,
          value: group,
          detail: problems.join(', '),
        });
      }
    }
    if ((gr.resourceNames?.length ?? 0) > 0 && (gr.resources?.length ?? 0) === 0) {
      errors.push({
        type: 'Invalid',
        field: `${path}.resourceNames`,
        value: gr.resourceNames,
        detail: 'using resourceNames requires at least one resource',
      });
    }
  });
}

const SUPPORTED_STAGES = STAGES.join(',');

function validateOmitStages(
  stages: readonly string[] | undefined,
  path: string,
  errors: FieldError[],
): void {
  (stages ?? []).forEach((stage, i) => {
    if (!(STAGES as readonly string[]).includes(stage)) {
      errors.push({
        type: 'Invalid',
        field: `${path}[${i}]`,
        value: stage,
        detail: `allowed stages are ${SUPPORTED_STAGES}`,
      });
    }
  });
}
