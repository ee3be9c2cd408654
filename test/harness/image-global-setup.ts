/**
 * Vitest global setup of the `image` project: a Docker engine (./docker.ts, Debian's dockerd
 * started when none runs), the Dockerfile's base images or their local stand-ins, the operator's
 * image built from the Dockerfile (./image.ts), and the control plane's binaries for the `run`
 * test, all before any test, so that a cold build (minutes) is charged to no test's timeout. The
 * engine is released after the last test: stopped when this run started it.
 */
import { readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import { ensureControlPlaneBinaries, reapOrphanedControlPlanes } from './controlplane.ts';
import {
  docker,
  type DockerEngine,
  ensureDockerEngine,
  reapOrphanedDockerEngine,
  releaseDockerEngine,
} from './docker.ts';
import {
  type BuiltImage,
  ensureBaseImages,
  ensureImage,
  HOST_DIR_PREFIX,
  removeOlderImages,
  TEST_OWNER_LABEL,
} from './image.ts';
import { alive } from './processes.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    /** The engine the image tests run containers on. */
    dockerEngine: DockerEngine;
    /** The operator's image, as the global setup built or found it. */
    image: BuiltImage;
  }
}

function seconds(since: number): string {
  return ((performance.now() - since) / 1000).toFixed(1);
}

/**
 * Removes containers, volumes and temporary directories that image tests of a dead process left
 * (a crashed run); they carry {@link TEST_OWNER_LABEL}, or their name, with the owner's pid.
 */
async function removeLeftovers(engine: DockerEngine): Promise<void> {
  const owned = async (kind: 'container' | 'volume') => {
    const format = `{{.${kind === 'container' ? 'ID' : 'Name'}}} {{.Label "${TEST_OWNER_LABEL}"}}`;
    const listed = await docker(engine, [
      kind,
      'ls',
      ...(kind === 'container' ? ['--all'] : []),
      '--filter',
      `label=${TEST_OWNER_LABEL}`,
      '--format',
      format,
    ]);
    return listed.stdout
      .split('\n')
      .map((line) => line.split(' '))
      .filter(([id, owner]) => id !== undefined && id !== '' && !alive(Number(owner)))
      .map(([id]) => id as string);
  };
  const containers = await owned('container');
  if (containers.length > 0) await docker(engine, ['container', 'rm', '--force', ...containers]);
  const volumes = await owned('volume');
  if (volumes.length > 0) await docker(engine, ['volume', 'rm', '--force', ...volumes]);
  for (const name of readdirSync(tmpdir())) {
    const owner = Number(name.slice(HOST_DIR_PREFIX.length).split('-')[0]);
    if (name.startsWith(HOST_DIR_PREFIX) && owner > 0 && !alive(owner)) {
      rmSync(join(tmpdir(), name), { recursive: true, force: true });
    }
  }
}

/** Runs before the image tests; returns the teardown. */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  reapOrphanedControlPlanes();
  await reapOrphanedDockerEngine();
  const engine = await ensureDockerEngine();
  try {
    await removeLeftovers(engine);
    const started = performance.now();
    const bases = await ensureBaseImages(engine);
    console.log(`image: base images from ${bases}, ready in ${seconds(started)} s`);
    const image = await ensureImage(engine);
    console.log(
      `image: ${image.ref} ${image.built ? 'built' : 'cached'} in ${image.seconds.toFixed(1)} s, ${(image.sizeBytes / 1e6).toFixed(0)} MB`,
    );
    await removeOlderImages(engine, image);
    await ensureControlPlaneBinaries();
    project.provide('dockerEngine', engine);
    project.provide('image', image);
  } catch (err) {
    await releaseDockerEngine(engine);
    throw err;
  }
  return async () => {
    await removeLeftovers(engine);
    await releaseDockerEngine(engine);
    reapOrphanedControlPlanes();
  };
}
