/**
 * Request attributes as the kube-apiserver's policy checker sees them
 * (`authorizer.Attributes`), reconstructed from a received audit event.
 */
import type { AuditEvent } from '../audit/types.ts';

/** The authenticated user, or null for a request that failed authentication. */
export interface RequestUser {
  readonly name: string;
  readonly groups: readonly string[];
}

/** What a policy rule is matched against. */
export interface RequestAttributes {
  readonly user: RequestUser | null;
  readonly verb: string;
  readonly resourceRequest: boolean;
  readonly namespace: string;
  readonly apiGroup: string;
  readonly resource: string;
  readonly subresource: string;
  readonly name: string;
  /** URL path without the query, percent-decoded as Go's `URL.Path` is. */
  readonly path: string;
}

const NO_GROUPS: readonly string[] = Object.freeze([]);

/**
 * Derives the attributes the apiserver evaluated its policy on from the event it emitted.
 *
 * - user: `event.user`, the authenticated (not the impersonated) user, as the audit filter runs
 *   before impersonation; an empty username means authentication failed, which upstream evaluates
 *   with no user at all.
 * - resource attributes: `objectRef`, which the apiserver builds from the same RequestInfo, except
 *   that on a create it later fills `name` and `namespace` from the request body. The policy saw
 *   the URL's values, so a create without a subresource is evaluated with no name and with the
 *   namespace from the URL.
 * - path: `requestURI` without its query.
 */
export function attributesFromEvent(event: AuditEvent): RequestAttributes {
  const username = event.user.username ?? '';
  const user: RequestUser | null =
    username === '' ? null : { name: username, groups: event.user.groups ?? NO_GROUPS };
  const path = pathOf(event.requestURI);
  const ref = event.objectRef;
  if (ref === undefined) {
    return {
      user,
      verb: event.verb,
      resourceRequest: false,
      namespace: '',
      apiGroup: '',
      resource: '',
      subresource: '',
      name: '',
      path,
    };
  }
  const subresource = ref.subresource ?? '';
  const createOnCollection = event.verb === 'create' && subresource === '';
  return {
    user,
    verb: event.verb,
    resourceRequest: true,
    namespace: createOnCollection ? namespaceOfPath(path) : (ref.namespace ?? ''),
    apiGroup: ref.apiGroup ?? '',
    resource: ref.resource ?? '',
    subresource,
    name: createOnCollection ? '' : (ref.name ?? ''),
    path,
  };
}

/** The path part of a request URI, percent-decoded; undecodable escapes are kept as sent. */
export function pathOf(requestURI: string): string {
  const q = requestURI.indexOf('?');
  const raw = q === -1 ? requestURI : requestURI.slice(0, q);
  if (!raw.includes('%')) return raw;
  try {
    return decodeURIComponent(raw);
  } catch {
    return raw;
  }
}

/**
 * The namespace RequestInfo reads from a resource path: `/api/v1/namespaces/<ns>/...` or
 * `/apis/<group>/<version>/namespaces/<ns>/...` (with an optional `watch/` after the version).
 * `/api/v1/namespaces/<name>` itself also yields `<name>`, as upstream does.
 */
export function namespaceOfPath(path: string): string {
  const parts = path.split('/').filter((p) => p !== '');
  let i: number;
  if (parts[0] === 'api') i = 2;
  else if (parts[0] === 'apis') i = 3;
  else return '';
  if (parts[i] === 'watch') i++;
  return parts[i] === 'namespaces' && parts.length > i + 1 ? (parts[i + 1] ?? '') : '';
}
