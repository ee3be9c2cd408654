// `standalone` in the operator's image, run with `docker run` as the chart runs the operator
// (read-only root file system, user 65532, no capabilities, no privilege escalation): HTTPS with a
// bearer token, batches a real kube-apiserver recorded, each sink's line-protocol file written
// under the image's default data directory, with no volume and with a fresh named volume there.
// Real processes: the Docker engine of the global setup and the containers it runs.
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../harness/influxd.ts';
import { TestPki } from '../../harness/pki.ts';
import { eventually } from '../../support/wait.ts';
import {
  AS_THE_CHART_RUNS_IT,
  type Container,
  createVolume,
  DATA_DIR,
  giveToNonroot,
  hostDir,
  https,
  nodeIn,
  NONROOT,
  removeAll,
  runContainer,
} from './container.ts';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const MANIFESTS = join(ROOT, 'examples', 'standalone');
const BATCH = readFileSync(join(ROOT, 'test/fixtures/apiserver-1.20/batches/00001.json'), 'utf8');
const ITEMS = (JSON.parse(BATCH) as { items: { objectRef?: { namespace?: string } }[] }).items;
/** The example AuditSink keeps every event of the batch (all ResponseComplete, at Metadata). */
const clusterTrail = (dataDir: string) => `${dataDir}/sinks/cluster-trail.lp`;
/** The example pipeline keeps its own namespace's events only. */
const shopOrders = (dataDir: string) => `${dataDir}/pipelines/shop/orders.lp`;

/** 5 s: standalone drains its queues and exits in about a second. */
const SIGTERM_EXIT_MS = 5_000;

let secrets: string;
let ca: string;
const token = `token-${process.pid}-for-the-apiserver`;

beforeAll(async () => {
  secrets = await hostDir();
  const pki = new TestPki(secrets);
  await pki.init();
  await pki.ca('ca');
  const serving = await pki.leaf('tls', 'ca', 'server');
  ca = readFileSync(join(secrets, 'ca.crt'), 'utf8');
  await writeFile(join(secrets, 'token'), `${token}\n`);
  await giveToNonroot(serving.certFile, serving.keyFile, join(secrets, 'token'));
});

afterAll(removeAll);

/**
 * The README's command: the example manifests, HTTPS, a token file, the image's data directory
 * (or `args`' --data-dir), with `flags` for the data directory's volume.
 */
function startStandalone(
  port: number,
  flags: readonly string[],
  args: readonly string[] = [],
): Container {
  return runContainer(
    [
      ...AS_THE_CHART_RUNS_IT,
      '-v',
      `${MANIFESTS}:/manifests:ro`,
      '-v',
      `${secrets}:/secrets:ro`,
      ...flags,
    ],
    [
      'standalone',
      '-f',
      '/manifests',
      `--listen=127.0.0.1:${port}`,
      '--tls-cert-file=/secrets/tls.crt',
      '--tls-key-file=/secrets/tls.key',
      '--token-file=/secrets/token',
      ...args,
    ],
  );
}

/** Lines of a file in the running container, read by the container's user. */
async function linesIn(container: Container, file: string): Promise<number> {
  const r = await container.exec([
    '/nodejs/bin/node',
    '-e',
    `const fs = require('node:fs'); console.log(fs.existsSync(${JSON.stringify(file)}) ? fs.readFileSync(${JSON.stringify(file)}, 'utf8').split('\\n').filter(Boolean).length : 0)`,
  ]);
  if (r.code !== 0) throw new Error(`reading ${file}: ${r.stderr}`);
  return Number(r.stdout.trim());
}

/** Waits for /healthz, checks authentication, posts the batch and waits for both sinks' files. */
async function receivesTheBatch(
  container: Container,
  port: number,
  dataDir = DATA_DIR,
): Promise<void> {
  const url = `https://127.0.0.1:${port}`;
  await Promise.race([
    eventually('/healthz 200', async () => (await https(`${url}/healthz`, { ca })).status === 200),
    container.exited.then((code) => {
      throw new Error(`standalone exited with ${code}:\n${container.output()}`);
    }),
  ]);
  const events = `${url}/audit/v1/events?timeout=30s`;
  expect((await https(events, { ca, method: 'POST', body: BATCH })).status).toBe(401);
  expect(
    (await https(events, { ca, method: 'POST', body: BATCH, token: 'not-the-token' })).status,
  ).toBe(401);
  const accepted = await https(events, { ca, method: 'POST', body: BATCH, token });
  expect(accepted.status, accepted.body).toBe(200);
  const shop = ITEMS.filter((e) => e.objectRef?.namespace === 'shop').length;
  await eventually('both sinks wrote their files', async () => {
    return (
      (await linesIn(container, clusterTrail(dataDir))) === ITEMS.length &&
      (await linesIn(container, shopOrders(dataDir))) === shop
    );
  });
  expect(container.output()).not.toContain(token);
}

describe('standalone in the image, as the chart runs it', () => {
  it('writes under the default data directory with no volume at all, and exits 0 on SIGTERM', async () => {
    const port = await freePort();
    const container = startStandalone(port, []);
    await receivesTheBatch(container, port);
    const { code, ms } = await container.stop('SIGTERM');
    expect(code, container.output()).toBe(0);
    expect(ms).toBeLessThan(SIGTERM_EXIT_MS);
  });

  it('writes into a fresh named volume at the data directory, which keeps the files', async () => {
    const volume = await createVolume();
    const port = await freePort();
    const container = startStandalone(port, ['-v', `${volume}:${DATA_DIR}`]);
    await receivesTheBatch(container, port);
    const { code, ms } = await container.stop('SIGTERM');
    expect(code, container.output()).toBe(0);
    expect(ms).toBeLessThan(SIGTERM_EXIT_MS);
    // The next container on the volume finds what the first one wrote.
    const kept = await nodeIn(
      `const fs = await import('node:fs'); console.log(fs.readFileSync('${clusterTrail(DATA_DIR)}', 'utf8').split('\\n').filter(Boolean).length)`,
      ['-v', `${volume}:${DATA_DIR}:ro`],
    );
    expect(Number(kept)).toBe(ITEMS.length);
  });

  it('writes into a data directory given with --data-dir on a tmpfs, as the chart mounts its emptyDir', async () => {
    const port = await freePort();
    const container = startStandalone(
      port,
      ['--tmpfs', `/spool:uid=${NONROOT},gid=${NONROOT},mode=0700`],
      ['--data-dir=/spool'],
    );
    await receivesTheBatch(container, port, '/spool');
    expect((await container.stop('SIGTERM')).code, container.output()).toBe(0);
  });
});
