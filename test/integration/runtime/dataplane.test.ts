// The data plane's shutdown delay on a real listener (plain HTTP on 127.0.0.1, in this process),
// with no sinks: a replica that was ready keeps its listener for the delay, readiness off; one
// that never was ready closes at once (a failed start has no endpoint to leave).
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { validateSettings } from '../../../src/config/settings.ts';
import { type DataPlane, startDataPlane } from '../../../src/runtime/dataplane.ts';
import { createLogger } from '../../../src/telemetry/logger.ts';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function plane(delaySeconds: number): Promise<DataPlane> {
  const dir = await mkdtemp(join(tmpdir(), 'kao-dataplane-'));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  const settings = validateSettings({
    insecure: true,
    listen: '127.0.0.1:0',
    dataDir: dir,
    shutdownGraceSeconds: 10,
    shutdownDelaySeconds: delaySeconds,
  });
  const started = await startDataPlane(
    { settings, secrets: () => new Map(), log: createLogger('silent'), embeddedDestination: true },
    [],
  );
  cleanups.push(() => started.shutdown());
  return started;
}

async function status(url: string): Promise<number | string> {
  try {
    const res = await fetch(url);
    await res.text();
    return res.status;
  } catch (err) {
    return ((err as Error).cause as NodeJS.ErrnoException | undefined)?.code ?? String(err);
  }
}

describe('the data plane leaving at a shutdown', () => {
  it('keeps its listener for the delay once it was ready, /readyz answering 503, then closes', async () => {
    const p = await plane(1);
    p.setReady(true);
    expect(await status(`${p.url}/readyz`)).toBe(200);
    const began = performance.now();
    const stopped = p.shutdown().then(() => performance.now() - began);
    expect(await status(`${p.url}/readyz`)).toBe(503);
    expect(await status(`${p.url}/healthz`)).toBe(200);
    const ms = await stopped;
    expect(ms).toBeGreaterThanOrEqual(1_000);
    expect(ms).toBeLessThan(3_000);
    expect(await status(`${p.url}/healthz`)).toBe('ECONNREFUSED');
  });

  it('closes at once when it never was ready', async () => {
    const p = await plane(5);
    const began = performance.now();
    await p.shutdown();
    expect(performance.now() - began).toBeLessThan(1_000);
    expect(await status(`${p.url}/healthz`)).toBe('ECONNREFUSED');
  });
});
