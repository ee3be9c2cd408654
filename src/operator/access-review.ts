/**
 * Who may read `/metrics`, asked of the kube-apiserver as the operator's ServiceAccount: a
 * TokenReview says whose bearer token it is, a SubjectAccessReview whether that user may `get`
 * the non-resource URL `/metrics`. The same two calls controller-runtime's metrics filter and
 * kube-rbac-proxy make (ADR 0014); the receiver caches their decisions.
 */
import { AuthenticationV1Api, AuthorizationV1Api, type KubeConfig } from '@kubernetes/client-node';
import type { AccessDecision, AccessReview } from '../receiver/index.ts';
import { call } from './kube.ts';

/** The non-resource URL and verb a scraper needs: `get` on `/metrics`. */
export const METRICS_ACCESS = Object.freeze({ path: '/metrics', verb: 'get' });

/**
 * Reviews bearer tokens for `get /metrics`. Each call makes a TokenReview and, for a token that
 * authenticates, a SubjectAccessReview; it rejects (a KubeApiError) when either call fails.
 */
export function metricsAccessReview(kc: KubeConfig): AccessReview {
  const authentication = kc.makeApiClient(AuthenticationV1Api);
  const authorization = kc.makeApiClient(AuthorizationV1Api);
  return async (token) => {
    // No audiences: the token must be valid for the apiserver itself, as a ServiceAccount's
    // mounted token and a user's kubeconfig token are.
    const review = await call('create TokenReview', () =>
      authentication.createTokenReview({
        body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token } },
      }),
    );
    const user = review.status?.user;
    const username = user?.username;
    if (review.status?.authenticated !== true || user === undefined || username === undefined) {
      return { allowed: false, reason: 'unauthenticated' };
    }
    const access = await call('create SubjectAccessReview', () =>
      authorization.createSubjectAccessReview({
        body: {
          apiVersion: 'authorization.k8s.io/v1',
          kind: 'SubjectAccessReview',
          spec: {
            user: username,
            ...(user.uid === undefined ? {} : { uid: user.uid }),
            ...(user.groups === undefined ? {} : { groups: user.groups }),
            ...(user.extra === undefined ? {} : { extra: user.extra }),
            nonResourceAttributes: { ...METRICS_ACCESS },
          },
        },
      }),
    );
    const decision: AccessDecision =
      access.status?.allowed === true
        ? { allowed: true, user: username }
        : { allowed: false, reason: 'forbidden', user: username };
    return decision;
  };
}
