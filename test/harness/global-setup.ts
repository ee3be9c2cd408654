/**
 * Vitest global setup of the integration project: builds influxd once before any test runs, so
 * a cold build (minutes, on a fresh machine) is not charged to a test's timeout, and reaps test
 * servers left behind by a crashed earlier run or worker.
 */
import { existsSync } from 'node:fs';
import { cachedInfluxdPath, ensureInfluxd, reapOrphanedServers } from './influxd.ts';

/** Runs before the integration tests. */
export async function setup(): Promise<void> {
  reapOrphanedServers();
  const started = performance.now();
  const override = process.env.INFLUXD_BIN;
  const cached = (override !== undefined && override !== '') || existsSync(cachedInfluxdPath());
  if (!cached) {
    console.log(
      'influxd: building it from the Go module proxy (first run on this machine: 6 to 7 minutes on 2 cores)',
    );
  }
  const path = await ensureInfluxd();
  if (!cached) {
    console.log(
      `influxd: built in ${((performance.now() - started) / 1000).toFixed(0)} s: ${path}`,
    );
  }
}

/** Runs after the integration tests: kills servers whose test process died before stopping them. */
export function teardown(): void {
  reapOrphanedServers();
}
