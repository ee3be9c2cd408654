/**
 * For the few test files that need a server their project builds after the others (`later` in
 * vitest.config.ts): waits until it is built, so that the project's other files need not wait
 * for it. Call it where no test timeout applies to the wait (a file's top level), or give the
 * hook a timeout that covers a cold build.
 */
import { inject } from 'vitest';
import { type ServerName, serversBuilt } from './builds.ts';

/** 30 min: a hook waiting for a cold build on a loaded 2-core machine. */
export const COLD_BUILD_TIMEOUT_MS = 30 * 60_000;

/** Waits for the named builds of this file's project; fails for one its project does not build. */
export async function serversLater(names: readonly ServerName[]): Promise<void> {
  const project = inject('servers') ?? [];
  const missing = names.filter((name) => !project.includes(name));
  if (missing.length > 0) {
    throw new Error(`${missing.join(', ')}: not built for this test's project (vitest.config.ts)`);
  }
  await serversBuilt(names, inject('buildStatusDir'));
}
