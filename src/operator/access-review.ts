/**
 * Who may read `/metrics`, asked of the kube-apiserver as the operator's ServiceAccount: a
 * TokenReview says whose bearer token it is, a SubjectAccessReview whether that user may `get`
 * the non-resource URL `/metrics`. The same two calls controller-runtime's metrics filter and
 * kube-rbac-proxy make (ADR 0014); the receiver caches their decisions.
 */
import type { AccessDecision, AccessReview } from '../receiver/index.ts';
import type { AccessReviewsApi } from './kube.ts';

/** The non-resource URL and verb a scraper needs: `get` on `/metrics`. */
export const METRICS_ACCESS = Object.freeze({ path: '/metrics', verb: 'get' });

/**
 * Reviews bearer tokens for `get /metrics`. Each call makes a TokenReview and, for a token that
 * authenticates, a SubjectAccessReview; it rejects (a KubeApiError) when either call fails.
 */
export function metricsAccessReview(api: AccessReviewsApi): AccessReview {
  return async (token): Promise<AccessDecision> => {
    const user = await api.reviewToken(token);
    if (user === undefined) return { allowed: false, reason: 'unauthenticated' };
    const allowed = await api.reviewNonResourceAccess(
      user,
      METRICS_ACCESS.path,
      METRICS_ACCESS.verb,
    );
    return allowed
      ? { allowed: true, user: user.username }
      : { allowed: false, reason: 'forbidden', user: user.username };
  };
}
