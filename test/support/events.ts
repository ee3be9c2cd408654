/**
 * Audit events and EventList bodies for tests that need one event with known values; tests that
 * need realistic traffic use the recorded events of `recorded.ts`. Pure data.
 */
import type { AuditEvent } from '../../src/audit/types.ts';

/**
 * An update of a Deployment's scale subresource at Request level, with every field the InfluxDB
 * schema writes (an impersonated user, two source IPs, a latency, a reason, a decision), and
 * `overrides`.
 */
export function auditEvent(overrides: Partial<AuditEvent> = {}): AuditEvent {
  return {
    level: 'Request',
    auditID: '0b6ad7a4-6c4e-4f3c-9a4e-2f0c1d1e2a3b',
    stage: 'ResponseComplete',
    requestURI: '/apis/apps/v1/namespaces/shop/deployments/web/scale',
    verb: 'update',
    user: { username: 'alice', groups: ['dev', 'system:authenticated'] },
    impersonatedUser: { username: 'bob' },
    sourceIPs: ['10.0.0.1', '10.0.0.2'],
    userAgent: 'kubectl/v1.35.2',
    objectRef: {
      resource: 'deployments',
      subresource: 'scale',
      namespace: 'shop',
      name: 'web',
      apiGroup: 'apps',
      apiVersion: 'v1',
    },
    responseStatus: { code: 409, reason: 'Conflict' },
    requestObject: { spec: { replicas: 3 } },
    requestReceivedTimestamp: '2026-11-22T04:08:57.000000Z',
    stageTimestamp: '2026-11-22T04:08:57.002500Z',
    annotations: { 'authorization.k8s.io/decision': 'allow' },
    ...overrides,
  };
}

/** An EventList body of `items`, as the apiserver's webhook posts it. */
export function eventList(items: unknown, apiVersion = 'audit.k8s.io/v1'): string {
  return JSON.stringify({ kind: 'EventList', apiVersion, metadata: {}, items });
}
