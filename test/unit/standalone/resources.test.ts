// Standalone mode's manifests: loading AuditSinks, AuditPipelines and Secrets from real files in
// temp dirs, reporting bad ones by file, and noticing changes by polling (treeSignature,
// watchPaths). Starts no process; uses the real file system.
import { mkdir, mkdtemp, rename, rm, symlink, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { loadResources } from '../../../src/standalone/resources.ts';
import { treeSignature, watchPaths } from '../../../src/runtime/watch.ts';
import type { SinkSettings } from '../../../src/sinks/spec.ts';
import { eventually } from '../../support/wait.ts';

/** Standalone mode: no cluster-wide namespaces; a sink without destination gets a local file. */
const STANDALONE: SinkSettings = { clusterWideNamespaces: [], requireDestination: false };
/** The namespace of Secrets that name none: the operator's own. */
const OWN_NAMESPACE = 'kube-audit';

const LEGACY_SINK = `apiVersion: kube-audit.dev/v1alpha1
kind: AuditSink
metadata:
  name: legacy
spec:
  policy:
    level: Metadata
    stages: [ResponseComplete]
`;

const SHOP_PIPELINE = `apiVersion: kube-audit.dev/v1alpha1
kind: AuditPipeline
metadata:
  name: orders
  namespace: shop
spec:
  policy:
    rules:
      - level: RequestResponse
  influxdb:
    url: http://127.0.0.1:8086
    org: platform
    bucket: shop-audit
    tokenSecretRef: {name: influx-token, key: token}
`;

const SHOP_SECRET = `apiVersion: v1
kind: Secret
metadata:
  name: influx-token
  namespace: shop
stringData:
  token: shop-token
`;

const BILLING_PIPELINE = `apiVersion: kube-audit.dev/v1alpha1
kind: AuditPipeline
metadata:
  name: invoices
  namespace: billing
spec:
  policy:
    omitStages: [RequestReceived]
    rules:
      - level: Metadata
`;

/** A Secret without namespace; `data` is base64, and `stringData` overrides its `token`. */
const DEFAULTED_SECRET = {
  apiVersion: 'v1',
  kind: 'Secret',
  metadata: { name: 'influx-admin' },
  data: {
    token: Buffer.from('from-data').toString('base64'),
    org: Buffer.from('platform').toString('base64'),
  },
  stringData: { token: 'from-stringData' },
};

let dir: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'kube-audit-resources-'));
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Writes `files` (relative path → content) under `dir`; returns their absolute paths. */
async function layout(files: Record<string, string>): Promise<Record<string, string>> {
  const paths: Record<string, string> = {};
  for (const [name, content] of Object.entries(files)) {
    const path = join(dir, name);
    await mkdir(dirname(path), { recursive: true });
    await writeFile(path, content);
    paths[name] = path;
  }
  return paths;
}

function load(path = dir) {
  return loadResources(path, STANDALONE, OWN_NAMESPACE);
}

describe('loadResources', () => {
  it('reads sinks and Secrets from multi-document YAML, JSON and nested directories', async () => {
    const paths = await layout({
      'sinks.yaml': `${LEGACY_SINK}---\n${SHOP_PIPELINE}---\n${SHOP_SECRET}`,
      'teams/billing/pipelines.yml': `---\n${BILLING_PIPELINE}`,
      'secrets.json': JSON.stringify(DEFAULTED_SECRET, null, 2),
    });
    const loaded = await load();

    expect(loaded.problems).toEqual([]);
    expect(loaded.warnings).toEqual([]);
    expect(loaded.sinks.map((s) => s.key).sort()).toEqual([
      'AuditPipeline/billing/invoices',
      'AuditPipeline/shop/orders',
      'AuditSink/legacy',
    ]);
    expect(Object.fromEntries(loaded.secrets)).toEqual({
      'shop/influx-token': { token: 'shop-token' },
      'kube-audit/influx-admin': { token: 'from-stringData', org: 'platform' },
    });
    expect(loaded.files).toEqual(
      [paths['secrets.json'], paths['sinks.yaml'], paths['teams/billing/pipelines.yml']].sort(),
    );
  });

  it('builds each sink from its resource', async () => {
    await layout({ 'sinks.yaml': `${LEGACY_SINK}---\n${SHOP_PIPELINE}` });
    const { sinks } = await load();
    const shop = sinks.find((s) => s.key === 'AuditPipeline/shop/orders');
    expect(shop?.scope).toEqual({ namespace: 'shop' });
    expect(shop?.influxdb).toMatchObject({
      bucket: 'shop-audit',
      tokenSecretRef: { name: 'influx-token', key: 'token' },
    });
    const legacy = sinks.find((s) => s.key === 'AuditSink/legacy');
    expect(legacy?.scope).toEqual({ namespace: null });
  });

  it('ignores files that are not manifests', async () => {
    const paths = await layout({
      'sink.yaml': LEGACY_SINK,
      'README.md': '# not a manifest: kind: AuditSink',
      'notes.txt': SHOP_PIPELINE,
      'sink.yaml.bak': 'kind: [broken',
      'nested/.keep': '',
    });
    const loaded = await load();
    expect(loaded.files).toEqual([paths['sink.yaml']]);
    expect(loaded.sinks.map((s) => s.key)).toEqual(['AuditSink/legacy']);
    expect(loaded.problems).toEqual([]);
  });

  it('reads a single file given directly', async () => {
    const paths = await layout({ 'only.yml': SHOP_PIPELINE, 'other.yaml': LEGACY_SINK });
    const loaded = await load(paths['only.yml']);
    expect(loaded.files).toEqual([paths['only.yml']]);
    expect(loaded.sinks.map((s) => s.key)).toEqual(['AuditPipeline/shop/orders']);
  });

  it('skips empty documents and empty files', async () => {
    await layout({ 'empty.yaml': '', 'gaps.yaml': `---\n---\n${LEGACY_SINK}---\n` });
    const loaded = await load();
    expect(loaded.sinks.map((s) => s.key)).toEqual(['AuditSink/legacy']);
    expect(loaded.problems).toEqual([]);
  });

  it('reports a bad document with its file and number, and loads the others', async () => {
    const bad = LEGACY_SINK.replace('name: legacy', 'name: broken').replace('Metadata', 'Loud');
    const paths = await layout({ 'sinks.yaml': `${LEGACY_SINK}---\n${bad}---\n${SHOP_PIPELINE}` });
    const loaded = await load();
    expect(loaded.sinks.map((s) => s.key)).toEqual([
      'AuditSink/legacy',
      'AuditPipeline/shop/orders',
    ]);
    expect(loaded.problems).toEqual([
      `${paths['sinks.yaml']}#2: AuditSink broken: invalid: spec.policy.level: Unsupported value: "Loud": supported values: "None", "Metadata", "Request", "RequestResponse"`,
    ]);
  });

  it('names a bad single-document file without a document number', async () => {
    const paths = await layout({
      'bad.yaml': SHOP_PIPELINE.replace('bucket: shop-audit', 'bucket: ""'),
      'good.yaml': LEGACY_SINK,
    });
    const loaded = await load();
    expect(loaded.sinks.map((s) => s.key)).toEqual(['AuditSink/legacy']);
    expect(loaded.problems).toEqual([
      `${paths['bad.yaml']}: AuditPipeline shop/orders: invalid: spec.influxdb.bucket: Required value`,
    ]);
  });

  it('reports resources of other kinds', async () => {
    const paths = await layout({
      'mixed.yaml': `apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n---\n${LEGACY_SINK}`,
    });
    const loaded = await load();
    expect(loaded.sinks.map((s) => s.key)).toEqual(['AuditSink/legacy']);
    expect(loaded.problems).toEqual([
      `${paths['mixed.yaml']}#1: resource: invalid: kind: Unsupported value: "ConfigMap": supported values: "AuditSink", "AuditPipeline"`,
    ]);
  });

  it('reports a pipeline without namespace: only Secrets take the default namespace', async () => {
    const paths = await layout({ 'p.yaml': SHOP_PIPELINE.replace('  namespace: shop\n', '') });
    const loaded = await load();
    expect(loaded.sinks).toEqual([]);
    expect(loaded.problems).toEqual([
      `${paths['p.yaml']}: AuditPipeline /orders: invalid: metadata.namespace: Required value`,
    ]);
  });

  it('keeps the first of two sinks with the same key and reports the second', async () => {
    const paths = await layout({
      '10-first.yaml': LEGACY_SINK,
      '20-second.yaml': LEGACY_SINK.replace('level: Metadata', 'level: RequestResponse'),
    });
    const loaded = await load();
    expect(loaded.sinks).toHaveLength(1);
    expect(loaded.sinks[0]?.policy.rules).toEqual([{ level: 'Metadata' }]);
    expect(loaded.problems).toEqual([
      `${paths['20-second.yaml']}: AuditSink/legacy is already declared in ${paths['10-first.yaml']}; this one is ignored`,
    ]);
  });

  it('reports malformed YAML and JSON by file, and loads the other files', async () => {
    const paths = await layout({
      'broken.yaml': 'kind: [AuditSink\nmetadata: {name: x',
      'broken.json': '{"kind": "Secret", "metadata": {"name": "x"}',
      'good.yaml': LEGACY_SINK,
    });
    const loaded = await load();
    expect(loaded.sinks.map((s) => s.key)).toEqual(['AuditSink/legacy']);
    expect(loaded.problems).toHaveLength(2);
    expect(loaded.problems[0]).toMatch(
      new RegExp(`^${escape(paths['broken.json'])}: malformed YAML/JSON: \\S`),
    );
    expect(loaded.problems[1]).toMatch(
      new RegExp(`^${escape(paths['broken.yaml'])}: malformed YAML/JSON: \\S`),
    );
    expect(loaded.secrets.size).toBe(0);
  });

  it('carries warnings with their file and sink', async () => {
    const paths = await layout({
      'p.yaml': SHOP_PIPELINE.replace(
        '    rules:',
        '    omitStagez: [RequestReceived]\n    rules:',
      ),
    });
    const loaded = await load();
    expect(loaded.problems).toEqual([]);
    expect(loaded.sinks.map((s) => s.key)).toEqual(['AuditPipeline/shop/orders']);
    expect(loaded.warnings).toHaveLength(1);
    expect(loaded.warnings[0]).toMatch(
      new RegExp(
        `^${escape(paths['p.yaml'])}: AuditPipeline/shop/orders: spec\\.policy\\.omitStagez: unknown field`,
      ),
    );
  });

  it('decodes Secret data from base64, lets stringData win, and defaults the namespace', async () => {
    await layout({
      'secret.yaml': `apiVersion: v1
kind: Secret
metadata:
  name: tokens
data:
  a: ${Buffer.from('alpha\n').toString('base64')}
  b: ${Buffer.from('from-data').toString('base64')}
stringData:
  b: from-stringData
  c: gamma
`,
    });
    const { secrets, problems } = await load();
    expect(problems).toEqual([]);
    expect(Object.fromEntries(secrets)).toEqual({
      'kube-audit/tokens': { a: 'alpha\n', b: 'from-stringData', c: 'gamma' },
    });
  });

  it.each([
    [
      'without a name',
      'kind: Secret\nmetadata: {namespace: shop}\n',
      'Secret: metadata.name: Required value',
    ],
    [
      'with non-text data',
      'kind: Secret\nmetadata: {name: s}\ndata: {token: 42}\n',
      'Secret s: data.token: expected base64 (stringData takes plain text)',
    ],
    [
      'with non-text stringData',
      'kind: Secret\nmetadata: {name: s}\nstringData: {token: [a]}\n',
      'Secret s: stringData.token: expected text',
    ],
  ])('reports a Secret %s', async (_what, manifest, problem) => {
    const paths = await layout({ 'secret.yaml': manifest, 'sink.yaml': LEGACY_SINK });
    const loaded = await load();
    expect(loaded.problems).toEqual([`${paths['secret.yaml']}: ${problem}`]);
    expect(loaded.secrets.size).toBe(0);
    expect(loaded.sinks).toHaveLength(1);
  });

  it('fails when the path does not exist', async () => {
    await expect(load(join(dir, 'nowhere'))).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('reports a manifest with an unresolved YAML alias, and loads the others', async () => {
    const paths = await layout({
      'alias.yaml': `${LEGACY_SINK.replace('name: legacy', 'name: *undefined-anchor')}`,
      'good.yaml': SHOP_PIPELINE,
    });
    const loaded = await load();
    expect(loaded.sinks.map((s) => s.key)).toEqual(['AuditPipeline/shop/orders']);
    expect(loaded.problems).toEqual([
      expect.stringMatching(new RegExp(`^${escape(paths['alias.yaml'])}: `)),
    ]);
  });

  it('reads the items of a kind: List, as kubectl writes them', async () => {
    await layout({
      'export.json': JSON.stringify({
        apiVersion: 'v1',
        kind: 'List',
        metadata: {},
        items: [
          {
            apiVersion: 'kube-audit.dev/v1alpha1',
            kind: 'AuditSink',
            metadata: { name: 'legacy' },
            spec: { policy: { level: 'Metadata', stages: ['ResponseComplete'] } },
          },
          DEFAULTED_SECRET,
        ],
      }),
    });
    const loaded = await load();
    expect(loaded.problems).toEqual([]);
    expect(loaded.sinks.map((s) => s.key)).toEqual(['AuditSink/legacy']);
    expect([...loaded.secrets.keys()]).toEqual(['kube-audit/influx-admin']);
  });

  it('reports Secret data that is not base64', async () => {
    const paths = await layout({
      'secret.yaml': 'kind: Secret\nmetadata: {name: s}\ndata: {token: "my plain token!"}\n',
    });
    const loaded = await load();
    expect(loaded.problems).toEqual([
      expect.stringMatching(
        new RegExp(`^${escape(paths['secret.yaml'])}: Secret s: data\\.token: `),
      ),
    ]);
    expect(loaded.secrets.size).toBe(0);
  });

  it('keeps the first of two Secrets with the same name and reports the second', async () => {
    const paths = await layout({
      '10-first.yaml': SHOP_SECRET,
      '20-second.yaml': SHOP_SECRET.replace('shop-token', 'other-token'),
    });
    const loaded = await load();
    expect(loaded.secrets.get('shop/influx-token')).toEqual({ token: 'shop-token' });
    expect(loaded.problems).toEqual([
      expect.stringMatching(new RegExp(`^${escape(paths['20-second.yaml'])}: `)),
    ]);
  });

  it('reads a manifest that is a symbolic link', async () => {
    const elsewhere = await mkdtemp(join(tmpdir(), 'kube-audit-elsewhere-'));
    try {
      await writeFile(join(elsewhere, 'sink.yaml'), LEGACY_SINK);
      await symlink(join(elsewhere, 'sink.yaml'), join(dir, 'linked.yaml'));
      const loaded = await load();
      expect(loaded.sinks.map((s) => s.key)).toEqual(['AuditSink/legacy']);
      expect(loaded.files).toEqual([join(dir, 'linked.yaml')]);
    } finally {
      await rm(elsewhere, { recursive: true, force: true });
    }
  });
});

/** A regular expression source matching `text` literally. */
function escape(text: string | undefined): string {
  return (text ?? '').replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Waits past the file system's coarse timestamp tick, so that a rewrite gets a new mtime
 * (Linux stamps files from a clock that advances every few milliseconds).
 */
const nextTick = () => sleep(30);

/** Writes `content` to `path` atomically: written beside the watched tree, then renamed into it. */
async function replaceByRename(path: string, content: string): Promise<void> {
  const staging = await mkdtemp(join(tmpdir(), 'kube-audit-staging-'));
  await writeFile(join(staging, 'next'), content);
  await rename(join(staging, 'next'), path);
  await rm(staging, { recursive: true, force: true });
}

describe('treeSignature', () => {
  it('stays the same while nothing changes', async () => {
    await layout({ 'a.yaml': LEGACY_SINK, 'sub/b.yaml': SHOP_PIPELINE });
    expect(await treeSignature(dir)).toBe(await treeSignature(dir));
  });

  it('changes when a file is added, also in a subdirectory', async () => {
    await layout({ 'a.yaml': LEGACY_SINK });
    const before = await treeSignature(dir);
    await layout({ 'sub/b.yaml': SHOP_PIPELINE });
    expect(await treeSignature(dir)).not.toBe(before);
  });

  it('changes when a file is removed', async () => {
    const paths = await layout({ 'a.yaml': LEGACY_SINK, 'b.yaml': SHOP_PIPELINE });
    const before = await treeSignature(dir);
    await unlink(paths['b.yaml'] as string);
    expect(await treeSignature(dir)).not.toBe(before);
  });

  it('changes when a file is rewritten with other content', async () => {
    const paths = await layout({ 'a.yaml': LEGACY_SINK });
    const before = await treeSignature(dir);
    await writeFile(paths['a.yaml'] as string, LEGACY_SINK.replace('Metadata', 'Request'));
    expect(await treeSignature(dir)).not.toBe(before);
  });

  it('changes when a file is rewritten with content of the same size', async () => {
    const paths = await layout({ 'a.yaml': LEGACY_SINK });
    const before = await treeSignature(dir);
    await nextTick();
    await writeFile(paths['a.yaml'] as string, LEGACY_SINK.replace('legacy', 'LEGACY'));
    expect(await treeSignature(dir)).not.toBe(before);
  });

  it('changes when a file is replaced by rename, as editors and Kubernetes volumes do', async () => {
    const paths = await layout({ 'a.yaml': LEGACY_SINK });
    const before = await treeSignature(dir);
    await nextTick();
    await replaceByRename(paths['a.yaml'] as string, LEGACY_SINK.replace('legacy', 'LEGACY'));
    expect(await treeSignature(dir)).not.toBe(before);
  });

  it('fingerprints a single file, and changes when it is rewritten', async () => {
    const paths = await layout({ 'a.yaml': LEGACY_SINK });
    const file = paths['a.yaml'] as string;
    const before = await treeSignature(file);
    await writeFile(file, `${LEGACY_SINK}# edited\n`);
    expect(await treeSignature(file)).not.toBe(before);
  });

  it("reads a missing path as 'missing'", async () => {
    expect(await treeSignature(join(dir, 'nowhere'))).toBe('missing');
  });

  it('changes when the target of a symlinked manifest is rewritten', async () => {
    const elsewhere = await mkdtemp(join(tmpdir(), 'kube-audit-elsewhere-'));
    try {
      await writeFile(join(elsewhere, 'sink.yaml'), LEGACY_SINK);
      await symlink(join(elsewhere, 'sink.yaml'), join(dir, 'linked.yaml'));
      const before = await treeSignature(dir);
      await writeFile(join(elsewhere, 'sink.yaml'), `${LEGACY_SINK}# edited\n`);
      expect(await treeSignature(dir)).not.toBe(before);
    } finally {
      await rm(elsewhere, { recursive: true, force: true });
    }
  });
});

/** 20 ms between polls: fast enough for tests, and several polls fit in every wait below. */
const INTERVAL_MS = 20;
/** Long enough for the first poll to record the baseline, and for several polls to run. */
const SETTLE_MS = 150;

describe('watchPaths', () => {
  const watches: { stop(): Promise<void> }[] = [];
  const errors: unknown[] = [];
  afterEach(async () => {
    for (const watch of watches.splice(0)) await watch.stop();
    errors.splice(0);
  });

  function watch(paths: () => readonly string[], onChange: () => Promise<void>) {
    const handle = watchPaths(paths, INTERVAL_MS, onChange, (err) => errors.push(err));
    watches.push(handle);
    return handle;
  }

  it('does not call onChange while nothing changes', async () => {
    await layout({ 'a.yaml': LEGACY_SINK });
    let calls = 0;
    watch(
      () => [dir],
      () => {
        calls++;
        return Promise.resolve();
      },
    );
    await sleep(SETTLE_MS);
    expect(calls).toBe(0);
  });

  it('calls onChange once per change: add, rewrite, rename over, remove', async () => {
    const paths = await layout({ 'a.yaml': LEGACY_SINK });
    let calls = 0;
    watch(
      () => [dir],
      () => {
        calls++;
        return Promise.resolve();
      },
    );
    await sleep(SETTLE_MS);

    const changes: (() => Promise<void>)[] = [
      () => replaceByRename(join(dir, 'b.yaml'), SHOP_PIPELINE),
      () => replaceByRename(paths['a.yaml'] as string, `${LEGACY_SINK}# rewritten\n`),
      () => replaceByRename(paths['a.yaml'] as string, `${LEGACY_SINK}# renamed over\n`),
      () => unlink(join(dir, 'b.yaml')),
    ];
    for (const [i, change] of changes.entries()) {
      await nextTick();
      await change();
      await eventually('one more reload', () => calls === i + 1, 2_000, 10);
      await sleep(SETTLE_MS);
      expect(calls).toBe(i + 1);
    }
  });

  it('watches a single file', async () => {
    const paths = await layout({ 'a.yaml': LEGACY_SINK });
    let calls = 0;
    watch(
      () => [paths['a.yaml'] as string],
      () => {
        calls++;
        return Promise.resolve();
      },
    );
    await sleep(SETTLE_MS);
    await replaceByRename(paths['a.yaml'] as string, `${LEGACY_SINK}# edited\n`);
    await eventually('the first reload', () => calls === 1, 2_000, 10);
    await sleep(SETTLE_MS);
    expect(calls).toBe(1);
  });

  it('runs one onChange at a time, and catches up with changes made meanwhile', async () => {
    const paths = await layout({ 'a.yaml': LEGACY_SINK });
    let running = 0;
    let overlapped = false;
    let calls = 0;
    watch(
      () => [dir],
      async () => {
        calls++;
        running++;
        overlapped ||= running > 1;
        await sleep(100);
        running--;
      },
    );
    await sleep(SETTLE_MS);
    await replaceByRename(paths['a.yaml'] as string, `${LEGACY_SINK}# one\n`);
    await eventually('the first reload', () => calls === 1, 2_000, 10);
    // Changed while the first onChange still runs: seen once it has finished.
    await replaceByRename(join(dir, 'b.yaml'), SHOP_PIPELINE);
    await eventually('the second reload', () => calls === 2, 2_000, 10);
    await eventually('no reload running', () => running === 0, 2_000, 10);
    await sleep(SETTLE_MS);
    expect(calls).toBe(2);
    expect(overlapped).toBe(false);
  });

  it('stops calling onChange after stop()', async () => {
    const paths = await layout({ 'a.yaml': LEGACY_SINK });
    let calls = 0;
    const handle = watch(
      () => [dir],
      () => {
        calls++;
        return Promise.resolve();
      },
    );
    await sleep(SETTLE_MS);
    await handle.stop();
    await sleep(INTERVAL_MS * 2);
    await replaceByRename(paths['a.yaml'] as string, `${LEGACY_SINK}# after stop\n`);
    await sleep(SETTLE_MS);
    expect(calls).toBe(0);
  });

  it('hands a rejecting onChange to onError, and keeps watching', async () => {
    const paths = await layout({ 'a.yaml': LEGACY_SINK });
    const unhandled: unknown[] = [];
    const record = (reason: unknown) => unhandled.push(reason);
    // Vitest's own listeners would report the rejection as a run error: swap them out meanwhile.
    const previous = process.listeners('unhandledRejection');
    process.removeAllListeners('unhandledRejection');
    process.on('unhandledRejection', record);
    try {
      let calls = 0;
      watch(
        () => [dir],
        () => {
          calls++;
          return calls === 1 ? Promise.reject(new Error('reload failed')) : Promise.resolve();
        },
      );
      await sleep(SETTLE_MS);
      await replaceByRename(paths['a.yaml'] as string, `${LEGACY_SINK}# one\n`);
      await eventually('a first reload', () => calls >= 1, 2_000, 10);
      await sleep(SETTLE_MS);
      const seen = calls;
      await nextTick();
      await replaceByRename(paths['a.yaml'] as string, `${LEGACY_SINK}# two\n`);
      await eventually('another reload', () => calls > seen, 2_000, 10);
      expect(unhandled).toEqual([]);
      expect(errors).toEqual([new Error('reload failed')]);
    } finally {
      process.removeListener('unhandledRejection', record);
      for (const listener of previous) process.on('unhandledRejection', listener);
    }
  });
});
