// The example Flux queries of docs/influxdb-schema.md, read from the page and run against a real
// influxd 2.7 (built by scripts/build-influxd.sh, started by test/harness/influxd.ts) holding the
// events recorded from kube-apiserver 1.20, moved to the last minutes for `range(start: -24h)`.
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InfluxOutput } from '../../../src/outputs/influxdb/writer.ts';
import { destinationOn, type InfluxServer, type Row, startInfluxd } from '../../harness/influxd.ts';
import { movedToNow, recordedEvents } from '../../support/recorded.ts';

const PAGE = readFileSync(new URL('../../../docs/influxdb-schema.md', import.meta.url), 'utf8');

/** The page's queries by name (`<!-- query: name -->` before each flux block). */
const QUERIES = new Map(
  [...PAGE.matchAll(/<!-- query: ([\w-]+) -->\s*```flux\n([\s\S]*?)```/g)].map((m) => [
    m[1] as string,
    m[2] as string,
  ]),
);

const RECORDED = recordedEvents();
let server: InfluxServer;

beforeAll(async () => {
  server = await startInfluxd();
  const events = movedToNow(recordedEvents());
  // The documented queries name the bucket "audit", the harness's onboarding bucket.
  expect(server.bucket).toBe('audit');
  await new InfluxOutput(destinationOn(server), 'audit-trail', () => server.token).write(events);
});

afterAll(async () => {
  await server?.dispose();
});

function run(name: string): Promise<Row[]> {
  const flux = QUERIES.get(name);
  if (flux === undefined) throw new Error(`docs/influxdb-schema.md has no query "${name}"`);
  return server.query(flux);
}

/** Just the named columns of each row. */
function pick(rows: Row[], ...columns: string[]): Record<string, unknown>[] {
  return rows.map((r) => Object.fromEntries(columns.map((c) => [c, r[c]])));
}

describe('the example queries of docs/influxdb-schema.md', () => {
  it('finds all eight queries on the page', () => {
    expect([...QUERIES.keys()]).toEqual([
      'changes',
      'denied',
      'per-user',
      'impersonation',
      'history',
      'secrets',
      'latency',
      'by-id',
    ]);
  });

  it('lists every write with its user, verb and object', async () => {
    const rows = await run('changes');
    expect(pick(rows, 'verb', 'resource', 'subresource', 'namespace', 'name')).toEqual([
      { verb: 'create', resource: 'namespaces', subresource: '', namespace: '', name: 'shop' },
      { verb: 'create', resource: 'namespaces', subresource: '', namespace: '', name: 'billing' },
      {
        verb: 'create',
        resource: 'configmaps',
        subresource: '',
        namespace: 'shop',
        name: 'settings',
      },
      { verb: 'create', resource: 'secrets', subresource: '', namespace: 'shop', name: 'tls-key' },
      { verb: 'create', resource: 'deployments', subresource: '', namespace: 'shop', name: 'api' },
      {
        verb: 'patch',
        resource: 'deployments',
        subresource: 'scale',
        namespace: 'shop',
        name: 'api',
      },
      { verb: 'patch', resource: 'deployments', subresource: '', namespace: 'shop', name: 'api' },
      { verb: 'create', resource: 'roles', subresource: '', namespace: 'billing', name: 'viewer' },
      {
        verb: 'create',
        resource: 'rolebindings',
        subresource: '',
        namespace: 'billing',
        name: 'dev-viewer',
      },
      {
        verb: 'patch',
        resource: 'configmaps',
        subresource: '',
        namespace: 'shop',
        name: 'settings',
      },
      { verb: 'patch', resource: 'deployments', subresource: '', namespace: 'shop', name: 'api' },
      {
        verb: 'delete',
        resource: 'configmaps',
        subresource: '',
        namespace: 'shop',
        name: 'settings',
      },
      // The apiserver records a namespace's own name as its namespace on delete.
      {
        verb: 'delete',
        resource: 'namespaces',
        subresource: '',
        namespace: 'billing',
        name: 'billing',
      },
    ]);
    expect(new Set(rows.map((r) => r.user))).toEqual(new Set(['admin']));
  });

  it('lists the denied requests', async () => {
    const rows = await run('denied');
    expect(pick(rows, 'user', 'verb', 'resource', 'namespace', 'code', '_value')).toEqual(
      expect.arrayContaining([
        {
          user: 'dev',
          verb: 'list',
          resource: 'configmaps',
          namespace: 'billing',
          code: '403',
          _value: '/api/v1/namespaces/billing/configmaps?limit=500',
        },
        {
          user: 'dev',
          verb: 'list',
          resource: 'secrets',
          namespace: 'shop',
          code: '403',
          _value: '/api/v1/namespaces/shop/secrets?limit=500',
        },
        {
          user: 'admin',
          verb: 'list',
          resource: 'pods',
          namespace: 'shop',
          code: '403',
          _value: '/api/v1/namespaces/shop/pods?limit=500',
        },
      ]),
    );
    expect(rows).toHaveLength(3);
  });

  it('counts requests per user and verb', async () => {
    const rows = await run('per-user');
    expect(pick(rows, 'user', 'verb', '_value')[0]).toEqual({
      user: 'admin',
      verb: 'create',
      _value: 7,
    });
    expect(rows.reduce((sum, r) => sum + (r._value as number), 0)).toBe(RECORDED.length);
  });

  it('shows who acted as someone else', async () => {
    const rows = await run('impersonation');
    expect(pick(rows, 'authenticated_as', 'acting_as', 'verb', 'resource')).toEqual([
      { authenticated_as: 'admin', acting_as: 'dev', verb: 'list', resource: 'pods' },
    ]);
  });

  it('tells the history of one configmap with the bodies that changed it', async () => {
    const rows = await run('history');
    expect(pick(rows, 'verb', 'code')).toEqual([
      { verb: 'create', code: '201' },
      { verb: 'get', code: '200' },
      { verb: 'patch', code: '200' },
      { verb: 'delete', code: '200' },
      { verb: 'get', code: '404' },
    ]);
    const patch = rows[2] as Row;
    expect(JSON.parse(patch.request_object as string)).toEqual(
      RECORDED.find((e) => e.verb === 'patch' && e.objectRef?.resource === 'configmaps')
        ?.requestObject,
    );
  });

  it('lists the secrets touched', async () => {
    const rows = await run('secrets');
    expect(pick(rows, 'user', 'verb', 'decision')).toEqual([
      { user: 'admin', verb: 'create', decision: 'allow' },
      { user: 'dev', verb: 'list', decision: 'forbid' },
    ]);
  });

  it('ranks resources by 99th percentile latency', async () => {
    const rows = await run('latency');
    expect(rows.length).toBeGreaterThan(3);
    const latencies = rows.map((r) => r._value as number);
    expect([...latencies].sort((a, b) => b - a)).toEqual(latencies);
    expect(latencies.every((l) => l >= 0 && l < 10_000)).toBe(true);
  });

  it('finds one event by audit ID', async () => {
    const rows = await run('by-id');
    expect(pick(rows, 'verb', 'resource', '_value')).toEqual([
      { verb: 'create', resource: 'namespaces', _value: '98dc0deb-1257-48c4-87a8-47b3f4df17a8' },
    ]);
  });
});
