// The influxd test harness cleans up after itself: starts real influxd servers (built by
// scripts/build-influxd.sh), some from child Node processes that exit or are killed while their
// server runs.
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { reapOrphanedServers, RUN_ROOT, startInfluxd } from '../../harness/influxd.ts';

const HARNESS = new URL('../../harness/influxd.ts', import.meta.url).href;

async function answers(url: string): Promise<boolean> {
  try {
    return (await fetch(`${url}/health`)).ok;
  } catch {
    return false;
  }
}

/** The run directories whose server belongs to process `owner`. */
function dirsOf(owner: number): string[] {
  if (!existsSync(RUN_ROOT)) return [];
  return readdirSync(RUN_ROOT).filter((name) => {
    try {
      const record = JSON.parse(readFileSync(join(RUN_ROOT, name, 'server.json'), 'utf8')) as {
        owner: number;
      };
      return record.owner === owner;
    } catch {
      return false;
    }
  });
}

/**
 * A child Node process that starts a server, prints its URL, then runs `then` (a statement).
 * Resolves with the child and the URL once the server answers.
 */
function childWithServer(then: string) {
  const script = `
    import { startInfluxd } from ${JSON.stringify(HARNESS)};
    const server = await startInfluxd();
    console.log(server.url);
    ${then}
  `;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const url = new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      if (out.includes('\n')) resolve(out.trim());
    });
    child.once('exit', (code) => reject(new Error(`child exited with ${code} before starting`)));
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return { child, url, exited };
}

afterEach(() => {
  reapOrphanedServers();
});

describe('the influxd harness', () => {
  it('stops the server and removes its data on dispose', async () => {
    const server = await startInfluxd();
    const dirs = dirsOf(process.pid);
    expect(dirs.length).toBeGreaterThan(0);
    expect(await answers(server.url)).toBe(true);
    await server.dispose();
    await server.dispose(); // twice is harmless
    expect(await answers(server.url)).toBe(false);
    expect(dirsOf(process.pid)).toEqual([]);
  });

  it('kills the server when its test process exits without disposing it', async () => {
    const { child, url, exited } = childWithServer('process.exit(0);');
    const serverUrl = await url;
    await exited;
    expect(await answers(serverUrl)).toBe(false);
    expect(dirsOf(child.pid as number)).toEqual([]);
  });

  it('kills the server when its test process is stopped with SIGTERM', async () => {
    const { child, url, exited } = childWithServer('setInterval(() => {}, 1000);');
    const serverUrl = await url;
    child.kill('SIGTERM');
    await exited;
    expect(await answers(serverUrl)).toBe(false);
    expect(dirsOf(child.pid as number)).toEqual([]);
  });

  it('reaps a server whose test process was killed outright', async () => {
    const { child, url, exited } = childWithServer('setInterval(() => {}, 1000);');
    const serverUrl = await url;
    child.kill('SIGKILL');
    await exited;
    // Nothing ran in the child: its server lives on until the global setup's reaper finds it.
    expect(await answers(serverUrl)).toBe(true);
    expect(dirsOf(child.pid as number)).toHaveLength(1);
    expect(reapOrphanedServers()).toBeGreaterThanOrEqual(1);
    expect(dirsOf(child.pid as number)).toEqual([]);
    await expect.poll(() => answers(serverUrl), { timeout: 5_000 }).toBe(false);
  });

  it('restarts a stopped server on the same URL with its data', async () => {
    const server = await startInfluxd();
    try {
      const write = () =>
        fetch(`${server.url}/api/v2/write?org=${server.org}&bucket=${server.bucket}`, {
          method: 'POST',
          headers: { authorization: `Token ${server.token}` },
          body: 'probe v=1 1',
        });
      expect((await write()).status).toBe(204);
      await server.kill();
      expect(await answers(server.url)).toBe(false);
      await server.restart();
      const rows = await server.query(
        `from(bucket: "${server.bucket}") |> range(start: 0) |> filter(fn: (r) => r._measurement == "probe")`,
      );
      expect(rows).toHaveLength(1);
    } finally {
      await server.dispose();
    }
  });
});
