/**
 * Vitest global setup of the integration and e2e projects: builds influxd, etcd, both
 * kube-apiservers, kubectl and helm once before any test runs, so a cold build (minutes, on a
 * fresh machine) is not charged to a test's timeout, and reaps test servers left behind by a
 * crashed earlier run or worker.
 */
import { existsSync } from 'node:fs';
import {
  controlPlaneBinariesCached,
  ensureControlPlaneBinaries,
  KUBE_VERSION,
  LEGACY_KUBE_VERSION,
  reapOrphanedControlPlanes,
} from './controlplane.ts';
import { cachedInfluxdPath, ensureInfluxd, reapOrphanedServers } from './influxd.ts';

function seconds(since: number): string {
  return ((performance.now() - since) / 1000).toFixed(0);
}

/** Runs before the integration and e2e tests. */
export async function setup(): Promise<void> {
  reapOrphanedServers();
  reapOrphanedControlPlanes();
  let started = performance.now();
  const override = process.env.INFLUXD_BIN;
  const cached = (override !== undefined && override !== '') || existsSync(cachedInfluxdPath());
  if (!cached) {
    console.log(
      'influxd: building it from the Go module proxy (first run on this machine: 6 to 7 minutes on 2 cores)',
    );
  }
  const path = await ensureInfluxd();
  if (!cached) {
    console.log(`influxd: built in ${seconds(started)} s: ${path}`);
  }

  started = performance.now();
  const controlPlaneCached = controlPlaneBinariesCached({ legacy: true });
  if (!controlPlaneCached) {
    console.log(
      `control plane: building kube-apiserver ${KUBE_VERSION} and ${LEGACY_KUBE_VERSION} from the Go module proxy, fetching etcd, kubectl and helm (first run on this machine: about 15 minutes on 2 cores)`,
    );
  }
  await ensureControlPlaneBinaries({ legacy: true });
  if (!controlPlaneCached) {
    console.log(`control plane: binaries ready in ${seconds(started)} s`);
  }
}

/** Runs after the tests: kills servers whose test process died before stopping them. */
export function teardown(): void {
  reapOrphanedServers();
  reapOrphanedControlPlanes();
}
