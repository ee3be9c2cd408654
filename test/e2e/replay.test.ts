// Runs the built CLI (`node dist/main.js replay`) on an audit log of events a real kube-apiserver
// recorded, with the example manifests.
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const MAIN = join(ROOT, 'dist', 'main.js');
const EVENTS = join(ROOT, 'test', 'fixtures', 'apiserver-1.20', 'events.jsonl');
const RECORDED = readFileSync(EVENTS, 'utf8')
  .split('\n')
  .filter(Boolean)
  .map((l) => JSON.parse(l) as { objectRef?: { namespace?: string } });

const run = promisify(execFile);
const dirs: string[] = [];
afterEach(async () => {
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

/** Runs replay with `--data-dir`, or with `KUBE_AUDIT_DATA_DIR` when `via` says so. */
async function replay(events: string, dataDir: string, via: 'flag' | 'env' = 'flag') {
  return run(
    process.execPath,
    [
      MAIN,
      'replay',
      '--events',
      events,
      '-f',
      'examples/standalone',
      ...(via === 'flag' ? ['--data-dir', dataDir] : []),
    ],
    {
      cwd: ROOT,
      env: via === 'env' ? { ...process.env, KUBE_AUDIT_DATA_DIR: dataDir } : process.env,
    },
  ).then(
    (r) => ({ code: 0, ...r }),
    (e: { code: number; stdout: string; stderr: string }) => e,
  );
}

async function lines(file: string): Promise<number> {
  return existsSync(file) ? (await readFile(file, 'utf8')).split('\n').filter(Boolean).length : 0;
}

describe('replay', () => {
  it('runs an audit log through every sink and reports what each kept', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'kao-replay-'));
    dirs.push(dataDir);
    const result = await replay(EVENTS, dataDir);
    expect(result.code).toBe(0);
    const shop = RECORDED.filter((e) => e.objectRef?.namespace === 'shop').length;
    expect(result.stdout).toContain(`replayed ${RECORDED.length} events`);
    expect(result.stdout).toContain(
      `AuditPipeline/shop/orders: kept ${shop}, dropped by policy 0, by namespace ${RECORDED.length - shop}, written ${shop}`,
    );
    expect(await lines(join(dataDir, 'sinks', 'cluster-trail.lp'))).toBe(RECORDED.length);
    expect(await lines(join(dataDir, 'pipelines', 'shop', 'orders.lp'))).toBe(shop);
  });

  it('writes under KUBE_AUDIT_DATA_DIR without --data-dir, as the container image sets it', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'kao-replay-'));
    dirs.push(dataDir);
    const result = await replay(EVENTS, dataDir, 'env');
    expect(result.code).toBe(0);
    expect(await lines(join(dataDir, 'sinks', 'cluster-trail.lp'))).toBe(RECORDED.length);
  });

  it('reports invalid lines with their line numbers, replays the rest, and exits 1', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'kao-replay-'));
    dirs.push(dataDir);
    const log = join(dataDir, 'audit.log');
    const good = readFileSync(EVENTS, 'utf8').split('\n').filter(Boolean);
    await writeFile(log, `${good[0]}\n{"level":"Bogus"}\n${good[1]}\n`);
    const result = await replay(log, dataDir);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`error: ${log}:2: level: unsupported value "Bogus"`);
    expect(result.stdout).toContain('replayed 2 events');
  });

  it('fails clearly when the audit log does not exist', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'kao-replay-'));
    dirs.push(dataDir);
    const result = await replay(join(dataDir, 'missing.log'), dataDir);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('no such file');
    expect(result.stderr).not.toContain('    at ');
  });
});
