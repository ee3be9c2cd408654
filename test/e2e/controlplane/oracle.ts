/**
 * The oracle of the control-plane end-to-end tests: the kube-apiserver's own audit log
 * (`--audit-log-path`) holds every event it recorded; the repository's policy engine (tested
 * against upstream's checker tests) says which of them each sink keeps and at which level; the
 * sink's bucket must hold exactly those. Only the test's own users count (e.g. admin and alice),
 * so the operator's and the cluster's own API traffic never makes a comparison flaky. Used on the
 * control plane and on the single-node cluster. Starts nothing.
 */
import { readFile } from 'node:fs/promises';
import { expect } from 'vitest';
import { parseAuditLogLine } from '../../../src/audit/parse.ts';
import type { AuditEvent } from '../../../src/audit/types.ts';
import { routeEvent } from '../../../src/sinks/router.ts';
import { sinkFromResource } from '../../../src/sinks/spec.ts';
import type { InfluxServer } from '../../harness/influxd.ts';
import { eventually } from '../../support/wait.ts';

/** Where a sink writes: its bucket and the value of its `sink` tag. */
export interface WrittenBy {
  readonly bucket: string;
  readonly sink: string;
}

/** Compares what sinks wrote with what the apiserver logged. */
export class AuditOracle {
  /** Events recorded before this are out of scope (e.g. before the operator was ready). */
  since = new Date(0);
  readonly #users: readonly string[];
  readonly #influx: InfluxServer;
  readonly #auditLog: () => Promise<string>;
  readonly #clusterWideNamespaces: readonly string[];

  /**
   * `users`: the names whose requests count; `auditLog`: the apiserver's `--audit-log-path`
   * (JSON), or what reads it; `clusterWideNamespaces`: the operator's `--cluster-wide-namespaces`.
   */
  constructor(
    users: readonly string[],
    influx: InfluxServer,
    auditLog: string | (() => Promise<string>),
    clusterWideNamespaces: readonly string[],
  ) {
    this.#users = users;
    this.#influx = influx;
    this.#auditLog = typeof auditLog === 'string' ? () => readFile(auditLog, 'utf8') : auditLog;
    this.#clusterWideNamespaces = clusterWideNamespaces;
  }

  /** The test users' events the apiserver logged since {@link since}, parsed. */
  async loggedEvents(): Promise<AuditEvent[]> {
    const users = new Set(this.#users);
    const text = await this.#auditLog();
    return text
      .split('\n')
      .filter((l) => l.trim() !== '')
      .map((l) => parseAuditLogLine(l))
      .filter((e) => users.has(e.user.username ?? ''))
      .filter((e) => new Date(e.stageTimestamp) >= this.since);
  }

  /** `auditID/stage/level` of every event of `events` that the resource's sink keeps. */
  expectedFor(resource: unknown, events: readonly AuditEvent[]): Set<string> {
    const sink = sinkFromResource(resource, {
      clusterWideNamespaces: this.#clusterWideNamespaces,
      requireDestination: true,
    });
    const kept = new Set<string>();
    for (const event of events) {
      const [outcome] = routeEvent(event, [sink], { allowSecretPayloads: false });
      if (outcome?.kept === true)
        kept.add(`${event.auditID}/${event.stage}/${outcome.event.level}`);
    }
    return kept;
  }

  /** `auditID/stage/level` of every point of the test users a sink wrote since {@link since}. */
  async written(by: WrittenBy): Promise<Set<string>> {
    const byUser = this.#users.map((u) => `r.user == ${JSON.stringify(u)}`).join(' or ');
    const rows = await this.#influx.query(`
      from(bucket: "${by.bucket}")
        |> range(start: ${this.since.toISOString()})
        |> filter(fn: (r) => r._measurement == "kubernetes_audit" and r._field == "audit_id")
        |> filter(fn: (r) => r.sink == "${by.sink}")
        |> filter(fn: (r) => ${byUser})`);
    return new Set(rows.map((r) => `${String(r._value)}/${String(r.stage)}/${String(r.level)}`));
  }

  /** Waits until a sink has written exactly `expected()` (recomputed each time), then asserts it. */
  async expectExactly(
    by: WrittenBy,
    expected: () => Promise<Set<string>>,
    timeoutMs = 30_000,
  ): Promise<void> {
    let last: { missing: string[]; extra: string[] } = { missing: [], extra: [] };
    try {
      await eventually(
        `${by.sink} to have written exactly the expected events`,
        async () => {
          const [want, have] = await Promise.all([expected(), this.written(by)]);
          last = {
            missing: [...want].filter((k) => !have.has(k)),
            extra: [...have].filter((k) => !want.has(k)),
          };
          return last.missing.length === 0 && last.extra.length === 0 && want.size > 0;
        },
        timeoutMs,
        500,
      );
    } finally {
      expect(last).toEqual({ missing: [], extra: [] });
    }
  }
}
