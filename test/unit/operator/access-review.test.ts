// Who may read /metrics in `run`: a TokenReview says whose token it is, a SubjectAccessReview
// whether that user (with its groups) may get /metrics; on the in-memory fake of the Kubernetes
// API. The real apiserver's answers are in test/e2e/controlplane/metrics-auth.test.ts. Starts no
// process and opens no socket.
import { describe, expect, it } from 'vitest';
import { METRICS_ACCESS, metricsAccessReview } from '../../../src/operator/access-review.ts';
import { FakeKubeApi, serverError } from '../../support/fake-kube-api.ts';

function cluster(): FakeKubeApi {
  const api = new FakeKubeApi();
  api.addUser('scraper-token', { username: 'system:serviceaccount:monitoring:prometheus' }, [
    METRICS_ACCESS,
  ]);
  api.addUser('alice-token', { username: 'alice', groups: ['system:authenticated'] }, []);
  api.addUser('oncall-token', { username: 'bob', groups: ['oncall', 'system:authenticated'] }, []);
  api.grantGroup('oncall', '/metrics', 'get');
  return api;
}

describe('metricsAccessReview', () => {
  it.each([
    {
      name: 'allows a user that may get /metrics',
      token: 'scraper-token',
      decision: { allowed: true, user: 'system:serviceaccount:monitoring:prometheus' },
    },
    {
      name: 'allows a user whose group may get /metrics',
      token: 'oncall-token',
      decision: { allowed: true, user: 'bob' },
    },
    {
      name: 'forbids a user that may not, naming the user',
      token: 'alice-token',
      decision: { allowed: false, reason: 'forbidden', user: 'alice' },
    },
    {
      name: 'refuses a token the apiserver does not know, without an access review',
      token: 'not-a-token',
      decision: { allowed: false, reason: 'unauthenticated' },
    },
  ])('$name', async ({ token, decision }) => {
    const api = cluster();
    expect(await metricsAccessReview(api)(token)).toEqual(decision);
    expect(api.count('reviewNonResourceAccess')).toBe(decision.user === undefined ? 0 : 1);
  });

  it('rejects when no decision could be made, so that nothing is cached as denied', async () => {
    const api = cluster();
    api.failNext('reviewToken', serverError());
    await expect(metricsAccessReview(api)('scraper-token')).rejects.toMatchObject({ status: 500 });
    api.forbid('reviewNonResourceAccess');
    await expect(metricsAccessReview(api)('scraper-token')).rejects.toMatchObject({ status: 403 });
  });
});
