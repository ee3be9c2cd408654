/**
 * The operator's own periodic API calls, as audit policy rules that leave them out. Every replica
 * reads and renews the leader Lease every few seconds and the leader patches the status of every
 * sink: recorded, that is some 120,000 events a day of the operator auditing itself, and each
 * pipeline recording its own status patches. Upstream's recommended policies drop leader-election
 * traffic the same way. Pure: no I/O.
 */
import type { PolicyRule } from '../policy/index.ts';

/** The identity the chart's ServiceAccount gives the operator in `namespace`. */
export function defaultOperatorUser(namespace: string): string {
  return `system:serviceaccount:${namespace}:kube-audit-operator`;
}

/**
 * None rules for `user`'s Lease reads and renewals and its replica reports in `namespace`, and its
 * status patches of AuditSinks and AuditPipelines. What else it does (creating the Lease and the
 * reports once, Events, list and watch of sinks and Secrets) stays audited.
 */
export function ownTrafficRules(user: string, namespace: string): PolicyRule[] {
  return [
    {
      level: 'None',
      users: [user],
      verbs: ['get', 'update'],
      namespaces: [namespace],
      resources: [{ group: 'coordination.k8s.io', resources: ['leases'] }],
    },
    // Each replica's report of its counts, and the leader's reading of them (ADR 0013).
    {
      level: 'None',
      users: [user],
      verbs: ['list', 'update'],
      namespaces: [namespace],
      resources: [{ group: '', resources: ['configmaps'] }],
    },
    {
      level: 'None',
      users: [user],
      verbs: ['patch'],
      resources: [
        { group: 'kube-audit.dev', resources: ['auditsinks/status', 'auditpipelines/status'] },
      ],
    },
  ];
}
