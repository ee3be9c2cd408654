/**
 * Setup file of the server-backed vitest projects: before a test file is loaded, waits until the
 * servers its project waits for are built (test/harness/builds.ts), and fails the file with the
 * build's own error when one could not be built. A top-level wait, not a hook: it has no timeout
 * (a cold build takes many minutes), and the test file can read what a build gave
 * (`builtValue`) when it loads. Starts nothing.
 */
import { inject } from 'vitest';
import { serversBuilt } from './builds.ts';

await serversBuilt(inject('awaitedServers'), inject('buildStatusDir'));
