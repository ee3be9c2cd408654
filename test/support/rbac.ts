/**
 * RBAC as granted and as used: the permissions an RBAC manifest grants, and those a user exercised
 * according to the kube-apiserver's own audit log (`--audit-log-path`, JSON lines). Each is a
 * string `<apiGroup> <resource>[/<subresource>] <verb>`. Starts nothing.
 */
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { parseAllDocuments } from 'yaml';
import type { AuditEvent } from '../../src/audit/types.ts';

/** The RBAC the operator needs, as documented; the chart grants the same. */
export const OPERATOR_RBAC = new URL('../../examples/operator/rbac.yaml', import.meta.url);

/** The user the manifest binds the operator's roles to, as the test control plane names it. */
export const OPERATOR_USER = 'kube-audit-operator';

interface Rule {
  readonly apiGroups?: string[];
  readonly resources?: string[];
  readonly nonResourceURLs?: string[];
  readonly verbs: string[];
}

interface RbacObject {
  readonly kind: string;
  readonly metadata: { readonly name: string };
  readonly rules?: Rule[];
  readonly roleRef?: { readonly kind: string; readonly name: string };
  readonly subjects?: { readonly kind: string; readonly name: string }[];
}

/**
 * Every permission the ClusterRoles and Roles of `manifest` grant to the user `subject` through
 * the bindings of the same manifest, in the API groups asked for. Roles for others (the metrics
 * reader, meant for scrapers) do not count.
 */
export function grantedPermissions(
  manifest: URL,
  groups: (group: string) => boolean,
  subject = OPERATOR_USER,
): string[] {
  const objects = parseAllDocuments(readFileSync(manifest, 'utf8')).map(
    (d) => d.toJS() as RbacObject,
  );
  const bound = new Set(
    objects
      .filter((o) => o.kind === 'ClusterRoleBinding' || o.kind === 'RoleBinding')
      .filter((o) => o.subjects?.some((s) => s.kind === 'User' && s.name === subject))
      .map((o) => `${o.roleRef?.kind}/${o.roleRef?.name}`),
  );
  return objects
    .filter((o) => o.kind === 'ClusterRole' || o.kind === 'Role')
    .filter((o) => bound.has(`${o.kind}/${o.metadata.name}`))
    .flatMap((o) => o.rules ?? [])
    .flatMap((rule) => [
      ...(rule.apiGroups ?? [])
        .filter(groups)
        .flatMap((group) =>
          (rule.resources ?? []).flatMap((resource) =>
            rule.verbs.map((verb) => `${group} ${resource} ${verb}`),
          ),
        ),
      // Written as permissionOf writes a non-resource request.
      ...(rule.nonResourceURLs ?? []).flatMap((url) =>
        rule.verbs.map((verb) => `nonResource ${url} ${verb}`),
      ),
    ]);
}

/** The permission a logged request needed. */
export function permissionOf(event: AuditEvent): string {
  const ref = event.objectRef;
  if (ref === undefined) return `nonResource ${event.requestURI.split('?')[0] ?? ''} ${event.verb}`;
  const resource =
    ref.subresource === undefined ? ref.resource : `${ref.resource}/${ref.subresource}`;
  return `${ref.apiGroup ?? ''} ${resource ?? ''} ${event.verb}`;
}

/** What `username` asked the apiserver for, and which of it was refused. */
export async function requestsBy(
  auditLog: string,
  username: string,
): Promise<{ used: Set<string>; refused: string[] }> {
  const requests = (await readFile(auditLog, 'utf8'))
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as AuditEvent)
    // ResponseStarted for watches, which end only when the client stops.
    .filter((e) => e.user.username === username && e.stage !== 'RequestReceived');
  return {
    used: new Set(requests.map(permissionOf)),
    refused: requests
      .filter((e) => e.annotations?.['authorization.k8s.io/decision'] === 'forbid')
      .map(permissionOf),
  };
}
