/**
 * Setup file of the server-backed vitest projects: before a test file's first test, waits until
 * the servers its project names are built (test/harness/builds.ts), and fails the file with the
 * build's own error when one could not be built. Starts nothing.
 */
import { beforeAll, inject } from 'vitest';
import { serversBuilt } from './builds.ts';

// A cold build of every server takes about 25 minutes on 2 busy cores; CI allows 90.
const BUILD_WAIT_MS = 60 * 60_000;

beforeAll(async () => {
  await serversBuilt(inject('servers'), inject('buildStatusDir'));
}, BUILD_WAIT_MS);
