// The chart's Grafana dashboard (charts/kube-audit-operator/dashboards/kube-audit.json): a valid
// Grafana 10 JSON model whose every Flux query runs against a real influxd 2.7 (built by
// scripts/build-influxd.sh, started by test/harness/influxd.ts) holding the events recorded from
// kube-apiserver 1.20, written by the operator's own InfluxDB output; and whose Prometheus queries
// name only metrics and labels the operator registers. Template variables and Grafana's Flux
// macros are substituted as Grafana substitutes them.
import { readFileSync } from 'node:fs';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InfluxOutput } from '../../src/outputs/influxdb/writer.ts';
import { ServerSlots } from '../../src/outputs/server-slots.ts';
import { receiverMetrics } from '../../src/receiver/metrics.ts';
import { LogMetrics, registerServerSlotMetrics, SinkMetrics } from '../../src/telemetry/metrics.ts';
import { destinationOn, type InfluxServer, type Row, startInfluxd } from '../harness/influxd.ts';
import { movedToNow, recordedEvents } from '../support/recorded.ts';

const FILE = new URL(
  '../../charts/kube-audit-operator/dashboards/kube-audit.json',
  import.meta.url,
);

interface DataSourceRef {
  readonly type: string;
  readonly uid: string;
}

interface Target {
  readonly refId: string;
  readonly datasource?: DataSourceRef;
  readonly query?: string;
  readonly expr?: string;
}

interface Panel {
  readonly id: number;
  readonly type: string;
  readonly title: string;
  readonly datasource?: DataSourceRef;
  readonly gridPos: { h: number; w: number; x: number; y: number };
  readonly targets?: Target[];
}

interface Variable {
  readonly name: string;
  readonly type: string;
  readonly query: string;
  readonly datasource?: DataSourceRef;
}

interface Dashboard {
  readonly uid: string;
  readonly title: string;
  readonly schemaVersion: number;
  readonly panels: Panel[];
  readonly templating: { list: Variable[] };
}

const text = readFileSync(FILE, 'utf8');
const dashboard = JSON.parse(text) as Dashboard;
const variables = new Map(dashboard.templating.list.map((v) => [v.name, v]));

/** Every query of the dashboard, with where it comes from, by data source type. */
function queries(type: 'influxdb' | 'prometheus'): { where: string; text: string }[] {
  const found: { where: string; text: string }[] = [];
  for (const panel of dashboard.panels) {
    for (const target of panel.targets ?? []) {
      const ds = target.datasource ?? panel.datasource;
      if (ds?.type !== type) continue;
      const query = type === 'influxdb' ? target.query : target.expr;
      found.push({ where: `${panel.title} (${target.refId})`, text: query ?? '' });
    }
  }
  for (const variable of dashboard.templating.list) {
    if (variable.type === 'query' && variable.datasource?.type === type) {
      found.push({ where: `variable ${variable.name}`, text: variable.query });
    }
  }
  return found;
}

const FLUX = queries('influxdb');
const PROMQL = queries('prometheus');

/** A time range as Grafana sends it. */
interface TimeRange {
  readonly from: Date;
  readonly to: Date;
  /** The panel's interval, in milliseconds. */
  readonly intervalMs: number;
}

/** Go's `time.Duration.String()` for whole milliseconds: 1m0s, 10s, 250ms. */
function goDuration(ms: number): string {
  if (ms < 1000) return `${ms}ms`;
  const h = Math.floor(ms / 3_600_000);
  const m = Math.floor((ms % 3_600_000) / 60_000);
  const s = (ms % 60_000) / 1000;
  if (h > 0) return `${h}h${m}m${s}s`;
  if (m > 0) return `${m}m${s}s`;
  return `${s}s`;
}

/**
 * What Grafana sends influxd for a Flux query: the frontend replaces the dashboard's variables,
 * then the backend replaces the `v.*` macros textually (Grafana's pkg/tsdb/influxdb/flux/macros.go:
 * every `word.word` whose second word is a macro name).
 */
function interpolate(flux: string, values: Record<string, string>, range: TimeRange): string {
  let out = flux.replace(/\$\{(\w+)\}|\$(\w+)/g, (whole, braced?: string, bare?: string) => {
    const name = (braced ?? bare) as string;
    if (name.startsWith('__')) return whole;
    const value = values[name];
    if (value === undefined) throw new Error(`no value for the variable ${name}`);
    return value;
  });
  for (const [match, , macro] of out.matchAll(/([a-zA-Z]+)\.([a-zA-Z]+)/gm)) {
    const replacement =
      macro === 'timeRangeStart'
        ? range.from.toISOString()
        : macro === 'timeRangeStop'
          ? range.to.toISOString()
          : macro === 'windowPeriod'
            ? goDuration(range.intervalMs)
            : macro === 'bucket' || macro === 'defaultBucket' || macro === 'organization'
              ? '""' // not used by the dashboard; Grafana would put the data source's setting here
              : undefined;
    if (replacement !== undefined) out = out.replaceAll(match, replacement);
  }
  return out.replace(/\$__interval_ms/g, String(range.intervalMs));
}

describe('the Grafana dashboard', () => {
  it('is a Grafana 10 dashboard with a stable uid', () => {
    // schemaVersion 38 is Grafana 10.0's.
    expect(dashboard.schemaVersion).toBeGreaterThanOrEqual(38);
    expect(dashboard.uid).toMatch(/^[\w-]{1,40}$/);
    expect(dashboard.title).not.toBe('');
    expect(text.endsWith('\n')).toBe(true);
  });

  it('takes the InfluxDB and Prometheus data sources as variables', () => {
    expect(variables.get('DS_INFLUXDB')).toMatchObject({ type: 'datasource', query: 'influxdb' });
    expect(variables.get('DS_PROMETHEUS')).toMatchObject({
      type: 'datasource',
      query: 'prometheus',
    });
    expect(variables.get('bucket')).toMatchObject({
      type: 'query',
      datasource: { type: 'influxdb', uid: '${DS_INFLUXDB}' },
    });
  });

  it('gives every panel a unique id, a place on the 24-column grid and a variable data source', () => {
    const ids = dashboard.panels.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    for (const panel of dashboard.panels) {
      const { x, w, h } = panel.gridPos;
      expect(x + w, panel.title).toBeLessThanOrEqual(24);
      expect(h, panel.title).toBeGreaterThan(0);
      if (panel.type === 'row') continue;
      expect(panel.targets?.length, panel.title).toBeGreaterThan(0);
      for (const target of panel.targets ?? []) {
        const ds = target.datasource ?? panel.datasource;
        expect(['${DS_INFLUXDB}', '${DS_PROMETHEUS}'], panel.title).toContain(ds?.uid);
      }
    }
  });

  it('has no two panels overlapping', () => {
    const cells = new Set<string>();
    for (const { title, gridPos: g } of dashboard.panels) {
      for (let x = g.x; x < g.x + g.w; x++) {
        for (let y = g.y; y < g.y + g.h; y++) {
          expect(cells.has(`${x},${y}`), `${title} overlaps at ${x},${y}`).toBe(false);
          cells.add(`${x},${y}`);
        }
      }
    }
  });

  it('uses only variables it defines', () => {
    for (const { where, text: query } of [...FLUX, ...PROMQL]) {
      for (const [, braced, bare] of query.matchAll(/\$\{(\w+)(?::\w+)?\}|\$(\w+)/g)) {
        const name = (braced ?? bare) as string;
        if (name.startsWith('__')) continue; // Grafana's own: $__rate_interval, ...
        expect(variables.has(name), `${where} uses $${name}`).toBe(true);
      }
    }
  });

  it('queries the documented measurement, tags and fields', () => {
    expect(variables.get('measurement')?.query).toBe('kubernetes_audit');
    const schema = readFileSync(new URL('../../docs/influxdb-schema.md', import.meta.url), 'utf8');
    const documented = new Set([...schema.matchAll(/^\| `(\w+)`/gm)].map((m) => m[1]));
    for (const { where, text: flux } of FLUX) {
      for (const [, column] of flux.matchAll(/r\.(\w+)|r\._field == "(\w+)"/g)) {
        if (column === undefined || column.startsWith('_') || column === 'name') continue;
        expect(documented.has(column), `${where} reads ${column}`).toBe(true);
      }
      for (const [, field] of flux.matchAll(/r\._field == "(\w+)"/g)) {
        expect(documented.has(field), `${where} reads field ${field}`).toBe(true);
      }
    }
  });
});

describe('the dashboard Flux queries against a real influxd', () => {
  const RECORDED = recordedEvents();
  let server: InfluxServer;
  const now = new Date();
  const range: TimeRange = {
    from: new Date(now.getTime() - 3_600_000),
    to: now,
    // One minute: Grafana's interval for a 1 h range on a panel about 60 points wide.
    intervalMs: 60_000,
  };

  beforeAll(async () => {
    server = await startInfluxd();
    const events = movedToNow(recordedEvents(), now.getTime());
    await new InfluxOutput(destinationOn(server), 'shop/trail', () => server.token).write(events);
  });

  afterAll(async () => {
    await server?.dispose();
  });

  const run = (flux: string): Promise<Row[]> =>
    server.query(
      interpolate(flux, { bucket: server.bucket, measurement: 'kubernetes_audit' }, range),
    );

  it('has Flux queries to run', () => {
    expect(FLUX.length).toBeGreaterThanOrEqual(10);
  });

  it.each(FLUX.map((q) => [q.where, q.text] as const))(
    '%s runs and finds the recorded events',
    async (_where, flux) => {
      const rows = await run(flux);
      expect(rows.length).toBeGreaterThan(0);
    },
  );

  it('offers the sink buckets and hides the system ones', async () => {
    const rows = await run(variables.get('bucket')?.query ?? '');
    const values = rows.map((r) => r._value);
    expect(values).toContain(server.bucket);
    expect(values.filter((v) => String(v).startsWith('_'))).toEqual([]);
  });

  it('counts the forbidden requests and the Secret accesses of the recording', async () => {
    const single = async (title: string) => {
      const flux = FLUX.find((q) => q.where.startsWith(`${title} (`))?.text;
      if (flux === undefined) throw new Error(`no panel ${title}`);
      return (await run(flux)).map((r) => r._value);
    };
    const forbidden = RECORDED.filter(
      (e) => e.annotations?.['authorization.k8s.io/decision'] === 'forbid',
    ).length;
    const secrets = RECORDED.filter((e) => e.objectRef?.resource === 'secrets').length;
    expect(await single('Events')).toEqual([RECORDED.length]);
    expect(await single('Forbidden')).toEqual([forbidden]);
    expect(await single('Secret accesses')).toEqual([secrets]);
  });

  it('lists who was denied what, newest first', async () => {
    const flux = FLUX.find((q) => q.where.startsWith('Forbidden requests ('))?.text ?? '';
    const rows = await run(flux);
    expect(rows.map((r) => r.request_uri)).toContain('/api/v1/namespaces/shop/secrets?limit=500');
    const times = rows.map((r) => Date.parse(r._time as string));
    expect([...times].sort((a, b) => b - a)).toEqual(times);
  });
});

describe('the dashboard Prometheus queries', () => {
  // The operator's registry, with every metric it can register.
  const registry = new Registry();
  new SinkMetrics(registry, () => new Map());
  receiverMetrics(registry);
  registerServerSlotMetrics(registry, new ServerSlots());
  new LogMetrics(registry);

  /** A metric name as PromQL reads it: histograms expose `_bucket`, `_sum` and `_count`. */
  function registered(name: string): { labelNames: readonly string[] } | undefined {
    const base = name.replace(/_(bucket|sum|count)$/, '');
    const metric = registry.getSingleMetric(name) ?? registry.getSingleMetric(base);
    if (metric === undefined) return undefined;
    return metric as unknown as { labelNames: readonly string[] };
  }

  it('has Prometheus queries', () => {
    expect(PROMQL.length).toBeGreaterThan(0);
  });

  it.each(PROMQL.map((q) => [q.where, q.text] as const))(
    '%s names registered metrics and their labels',
    (where, expr) => {
      const names = [...expr.matchAll(/\b(kube_audit_\w+)/g)].map((m) => m[1] as string);
      expect(names.length, where).toBeGreaterThan(0);
      const labels = new Set<string>();
      for (const name of names) {
        const metric = registered(name);
        expect(metric, `${where}: ${name} is not registered`).toBeDefined();
        for (const label of metric?.labelNames ?? []) labels.add(label);
        if (name.endsWith('_bucket')) labels.add('le');
      }
      const used = [
        ...[...expr.matchAll(/\bby \(([^)]*)\)/g)].flatMap((m) =>
          (m[1] as string).split(',').map((s) => s.trim()),
        ),
        ...[...expr.matchAll(/\{([^}]*)\}/g)].flatMap((m) =>
          [...(m[1] as string).matchAll(/(\w+)\s*(?:=~|!~|!=|=)/g)].map((l) => l[1] as string),
        ),
      ];
      for (const label of used) expect(labels.has(label), `${where}: label ${label}`).toBe(true);
    },
  );

  it('filters the receiver by endpoint names it records', () => {
    const endpoints = [
      'events',
      'sinks',
      'pipelines',
      'nativeSinks',
      'nativePipelines',
      'healthz',
      'readyz',
      'metrics',
      'unmatched',
    ];
    for (const { where, text: expr } of PROMQL) {
      for (const [, values] of expr.matchAll(/endpoint=~"([^"]*)"/g)) {
        for (const v of (values as string).split('|')) {
          expect(endpoints, `${where}: endpoint ${v}`).toContain(v);
        }
      }
    }
  });
});
