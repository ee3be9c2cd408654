/**
 * The operator's container image for tests, built for real from the repository's Dockerfile by
 * scripts/build-image.sh on the engine of ./docker.ts, cached by its inputs. When the Dockerfile's
 * base images are not in the engine, local stand-ins are built from Debian's and npm's packages
 * (scripts/build-base-stand-ins.sh) instead of pulling them: tests reach no registry of images.
 * `KUBE_AUDIT_BASE_IMAGES=pull` pulls the real ones instead, on a machine that reaches Docker Hub
 * and gcr.io.
 *
 * The build trusts this machine's CA bundle (a TLS-intercepting proxy re-signs npm's downloads
 * here) plus a marker CA of the tests' own, given as the build secret; the image tests check that
 * neither reaches the image.
 */
import { execFile } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
} from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  DATA_ROOT,
  type DockerEngine,
  docker,
  dockerOk,
  engineSharedWithOthers,
  RUN_ROOT,
} from './docker.ts';
import { alive } from './processes.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const BUILD_IMAGE_SCRIPT = join(ROOT, 'scripts', 'build-image.sh');
const STAND_IN_SCRIPT = join(ROOT, 'scripts', 'build-base-stand-ins.sh');

/** The Dockerfile's base images, by the exact names it uses. */
export const BASE_IMAGES = [
  'node:24-bookworm-slim',
  'gcr.io/distroless/nodejs24-debian12:nonroot',
] as const;

/** The label scripts/build-base-stand-ins.sh puts on its stand-ins. */
export const STAND_IN_LABEL = 'dev.kube-audit.stand-in';

/** The label scripts/build-image.sh puts on the image: the hash of its inputs. */
export const INPUTS_LABEL = 'dev.kube-audit.inputs';

/** Containers and volumes of the image tests carry it, with the test process's pid. */
export const TEST_OWNER_LABEL = 'dev.kube-audit.test-owner';

/** Temporary directories of the image tests are named `<prefix><pid>-...` in the temp dir. */
export const HOST_DIR_PREFIX = 'kao-image-';

/** A certificate of the tests' own, added to the build's CA file: the image must not hold it. */
export const BUILD_CA_MARKER = join(ROOT, 'test', 'fixtures', 'image', 'build-ca-marker.pem');

/** The machine's CA bundle: what Node.js is told to trust, else Debian's bundle, if any. */
export function hostCaBundle(): string | undefined {
  const candidates = [process.env.NODE_EXTRA_CA_CERTS, '/etc/ssl/certs/ca-certificates.crt'];
  return candidates.find((f): f is string => f !== undefined && f !== '' && existsSync(f));
}

/** The CA file the tests build with: the machine's bundle and the marker, one PEM file. */
export async function buildCaFile(): Promise<string> {
  const host = hostCaBundle();
  const file = join(RUN_ROOT, 'build-ca.pem');
  mkdirSync(RUN_ROOT, { recursive: true });
  await writeFile(
    file,
    (host === undefined ? '' : readFileSync(host, 'utf8')) + readFileSync(BUILD_CA_MARKER, 'utf8'),
  );
  return file;
}

/** Runs one of the build scripts; resolves with its stdout's last line and its stderr. */
function runScript(
  engine: DockerEngine,
  script: string,
  args: readonly string[],
): Promise<{ last: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile(
      'bash',
      [script, ...args],
      {
        env: { ...process.env, DOCKER: engine.client, DOCKER_HOST: engine.host },
        maxBuffer: 64 * 1024 * 1024,
      },
      (err, stdout, stderr) => {
        if (err !== null) {
          reject(new Error(`${script} failed: ${err.message}\n${stderr.slice(-16_384)}`));
          return;
        }
        resolve({ last: stdout.trim().split('\n').at(-1) ?? '', stderr });
      },
    );
  });
}

/** Where the base images came from. */
export type BaseImageSource = 'engine' | 'pulled' | 'stand-in';

/**
 * Makes both base images available in the engine under the Dockerfile's names: the real ones
 * when the engine has them (or `KUBE_AUDIT_BASE_IMAGES=pull`), otherwise the stand-ins, which
 * the script returns at once when they are current.
 */
export async function ensureBaseImages(engine: DockerEngine): Promise<BaseImageSource> {
  const labels = await Promise.all(
    BASE_IMAGES.map(async (image) => {
      const r = await docker(engine, [
        'image',
        'inspect',
        '--format',
        `{{index .Config.Labels "${STAND_IN_LABEL}"}}`,
        image,
      ]);
      return r.code === 0 ? r.stdout.trim() : undefined;
    }),
  );
  if (labels.every((l) => l === '')) return 'engine';
  if (process.env.KUBE_AUDIT_BASE_IMAGES === 'pull') {
    for (const image of BASE_IMAGES) await dockerOk(engine, ['pull', image]);
    return 'pulled';
  }
  await runScript(engine, STAND_IN_SCRIPT, []);
  return 'stand-in';
}

/** The image as the tests use it. */
export interface BuiltImage {
  /** The reference scripts/build-image.sh printed: `kube-audit-operator:<version>-<inputs hash>`. */
  readonly ref: string;
  /** The chart's default image, `kube-audit-operator:<appVersion>`: the same image. */
  readonly chartRef: string;
  /** `sha256:...` */
  readonly id: string;
  /** Whether this call built it (false: the script found it cached). */
  readonly built: boolean;
  /** How long the script took. */
  readonly seconds: number;
  /** The image's size as the engine reports it, in bytes. */
  readonly sizeBytes: number;
}

/**
 * Builds the image with scripts/build-image.sh (at once when cached), after making sure of its
 * base images ({@link ensureBaseImages}), and returns its reference. `force` rebuilds it
 * (BuildKit's cache still applies).
 */
export async function ensureImage(
  engine: DockerEngine,
  opts: { readonly force?: boolean } = {},
): Promise<BuiltImage> {
  await ensureBaseImages(engine);
  const started = performance.now();
  const { last: ref, stderr } = await runScript(engine, BUILD_IMAGE_SCRIPT, [
    '--ca-file',
    await buildCaFile(),
    // The engine started here has no bridge: build steps use the host's network.
    '--network',
    'host',
    ...(opts.force === true ? ['--force'] : []),
  ]);
  const seconds = (performance.now() - started) / 1000;
  const [id, size] = (
    await dockerOk(engine, ['image', 'inspect', '--format', '{{.Id}} {{.Size}}', ref])
  )
    .trim()
    .split(' ');
  return {
    ref,
    chartRef: ref.replace(/-[0-9a-f]{12}$/, ''),
    id: id ?? '',
    built: !/\] cached: /.test(stderr),
    seconds,
    sizeBytes: Number(size),
  };
}

/**
 * Removes the images of earlier inputs that scripts/build-image.sh left in an engine this harness
 * started (each change to src/ makes a new tag), keeping `keep`. Not while another run uses the
 * engine: the image of another checkout is that run's current one, not an earlier one.
 */
export async function removeOlderImages(engine: DockerEngine, keep: BuiltImage): Promise<void> {
  if (engineSharedWithOthers(engine)) return;
  const listed = await dockerOk(engine, [
    'image',
    'ls',
    '--filter',
    `label=${INPUTS_LABEL}`,
    '--format',
    '{{.Repository}}:{{.Tag}}',
  ]);
  const older = listed
    .split('\n')
    .filter(
      (ref) => ref !== '' && ref !== keep.ref && ref !== keep.chartRef && !ref.endsWith(':<none>'),
    );
  if (older.length > 0) await docker(engine, ['image', 'rm', ...older]);
}

/** Where saved image tarballs are kept, one per image id. */
export const TARBALL_DIR = join(
  process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'),
  'kube-audit-operator',
  'image-tarballs',
);

/** 1 hour: a tarball of another image id this old is no longer being imported by anyone. */
const STALE_TARBALL_MS = 3_600_000;

/**
 * The image as a `docker save` tarball (for `ctr images import`), under both of its names
 * (containerd sees `docker.io/library/kube-audit-operator:<tag>`), cached by image id; tarballs
 * of other ids older than an hour are removed.
 */
export async function saveImageTarball(engine: DockerEngine, image: BuiltImage): Promise<string> {
  const file = join(TARBALL_DIR, `${image.id.replace(/^sha256:/, '')}.tar`);
  if (existsSync(file)) return file;
  mkdirSync(TARBALL_DIR, { recursive: true });
  const partial = `${file}.${process.pid}.partial`;
  await dockerOk(engine, ['save', '--output', partial, image.ref, image.chartRef]);
  renameSync(partial, file);
  for (const name of readdirSync(TARBALL_DIR)) {
    const other = join(TARBALL_DIR, name);
    if (other !== file && Date.now() - statSync(other).mtimeMs > STALE_TARBALL_MS) {
      rmSync(other, { force: true });
    }
  }
  return file;
}

/**
 * Whether this machine has built images before (the engine's data root holds images), so that a
 * cold build is worth announcing. The image itself may still be out of date: ensureImage says.
 */
export function imageCached(): boolean {
  return existsSync(join(DATA_ROOT, 'image'));
}

/**
 * Removes containers, volumes and temporary directories that image tests of a dead process left
 * (a crashed run); they carry {@link TEST_OWNER_LABEL}, or their name, with the owner's pid.
 */
export async function removeTestLeftovers(engine: DockerEngine): Promise<void> {
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
