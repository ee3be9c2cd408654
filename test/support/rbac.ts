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

interface Rule {
  readonly apiGroups: string[];
  readonly resources: string[];
  readonly verbs: string[];
}

/** Every permission the ClusterRoles and Roles of `manifest` grant, in the API groups asked for. */
export function grantedPermissions(manifest: URL, groups: (group: string) => boolean): string[] {
  return parseAllDocuments(readFileSync(manifest, 'utf8'))
    .map((d) => d.toJS() as { kind: string; rules?: Rule[] })
    .filter((d) => d.kind === 'ClusterRole' || d.kind === 'Role')
    .flatMap((d) => d.rules ?? [])
    .flatMap((rule) =>
      rule.apiGroups
        .filter(groups)
        .flatMap((group) =>
          rule.resources.flatMap((resource) =>
            rule.verbs.map((verb) => `${group} ${resource} ${verb}`),
          ),
        ),
    );
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
