/**
 * Container images without a registry or a Docker engine, for the single-node cluster
 * (node.ts): one static Go program of test/images, built with the installed Go toolchain and
 * packed as an OCI image-layout tarball (oci-layout, index.json, blobs/sha256/: one layer, its
 * config and manifest) that `ctr images import` reads. The index names the image with the
 * `io.containerd.image.name` annotation, so the import tags it with exactly that reference.
 *
 * Cached outside the repository by everything that changes the tarball (the program's sources,
 * the Go version, the reference), and reproducible: the same inputs give the same bytes.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** The Go module with the programs (test/images). */
const IMAGES_MODULE = fileURLToPath(new URL('../images/', import.meta.url));

/** The programs of test/images. */
export type ImageProgram = 'pause' | 'nodeprobe';

/** An image tarball ready for `ctr images import`. */
export interface ImageTarball {
  /** The full reference the import tags, e.g. `localhost/kube-audit-operator/pause:1`. */
  readonly ref: string;
  readonly path: string;
}

function cacheDir(): string {
  const cache = process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache');
  return join(cache, 'kube-audit-operator', 'images');
}

/** Go's name for this machine's architecture, as images record it. */
function goArch(): string {
  // Node's names differ from Go's for these two only (arm64, ppc64, s390x, riscv64 agree).
  const names: Partial<Record<string, string>> = { x64: 'amd64', ia32: '386' };
  return names[process.arch] ?? process.arch;
}

/** sha256 of the inputs: go.mod, every file of the program's directory, Go's version, the ref. */
function inputsDigest(program: ImageProgram, ref: string, goVersion: string): string {
  const hash = createHash('sha256').update(`${ref}\n${goVersion}\n${goArch()}\n`);
  const dir = join(IMAGES_MODULE, program);
  for (const file of [
    'go.mod',
    ...readdirSync(dir)
      .sort()
      .map((f) => join(program, f)),
  ]) {
    hash.update(`${file}\n`).update(readFileSync(join(IMAGES_MODULE, file)));
  }
  return hash.digest('hex').slice(0, 16);
}

/** A content-addressed blob: written under blobs/sha256/, described by digest and size. */
async function writeBlob(
  layout: string,
  mediaType: string,
  bytes: Buffer,
): Promise<{ mediaType: string; digest: string; size: number }> {
  const hex = createHash('sha256').update(bytes).digest('hex');
  await writeFile(join(layout, 'blobs', 'sha256', hex), bytes);
  return { mediaType, digest: `sha256:${hex}`, size: bytes.length };
}

/** GNU tar options that make an archive depend on its files' contents and names only. */
const REPRODUCIBLE_TAR = [
  '--sort=name',
  '--mtime=@0',
  '--owner=0',
  '--group=0',
  '--numeric-owner',
  '--format=gnu',
];

const built = new Map<string, Promise<ImageTarball>>();

/**
 * Builds `program` and packs it as the image `ref` (entrypoint `/<program>`, user 65532), unless
 * the cache has it. Returns the tarball's path.
 */
export function goImage(program: ImageProgram, ref: string): Promise<ImageTarball> {
  const key = `${program} ${ref}`;
  let result = built.get(key);
  if (result === undefined) {
    result = buildGoImage(program, ref);
    result.catch(() => built.delete(key));
    built.set(key, result);
  }
  return result;
}

async function buildGoImage(program: ImageProgram, ref: string): Promise<ImageTarball> {
  // The toolchain installed here, never one downloaded for this module.
  const env = { ...process.env, CGO_ENABLED: '0', GOTOOLCHAIN: 'local', GOFLAGS: '-mod=mod' };
  const goVersion = (await run('go', ['env', 'GOVERSION'], { env })).stdout.trim();
  const dir = cacheDir();
  const path = join(dir, `${program}-${inputsDigest(program, ref, goVersion)}.tar`);
  if (existsSync(path)) return { ref, path };

  await mkdir(dir, { recursive: true });
  const work = await mkdtemp(join(dir, `.${program}-`));
  try {
    const rootfs = join(work, 'rootfs');
    await run(
      'go',
      ['build', '-trimpath', '-ldflags=-s -w', '-o', join(rootfs, program), `./${program}`],
      { cwd: IMAGES_MODULE, env },
    );
    const layerTar = join(work, 'layer.tar');
    await run('tar', [
      '--create',
      `--file=${layerTar}`,
      ...REPRODUCIBLE_TAR,
      '-C',
      rootfs,
      program,
    ]);

    const layout = join(work, 'layout');
    await mkdir(join(layout, 'blobs', 'sha256'), { recursive: true });
    // Uncompressed: the layer's digest is also its diff ID.
    const layer = await writeBlob(
      layout,
      'application/vnd.oci.image.layer.v1.tar',
      await readFile(layerTar),
    );
    const platform = { architecture: goArch(), os: 'linux' };
    const config = await writeBlob(
      layout,
      'application/vnd.oci.image.config.v1+json',
      Buffer.from(
        JSON.stringify({
          ...platform,
          config: { Entrypoint: [`/${program}`], User: '65532:65532' },
          rootfs: { type: 'layers', diff_ids: [layer.digest] },
        }),
      ),
    );
    const manifest = await writeBlob(
      layout,
      'application/vnd.oci.image.manifest.v1+json',
      Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: 'application/vnd.oci.image.manifest.v1+json',
          config,
          layers: [layer],
        }),
      ),
    );
    const tag = ref.slice(ref.lastIndexOf(':') + 1);
    await writeFile(
      join(layout, 'index.json'),
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.index.v1+json',
        manifests: [
          {
            ...manifest,
            platform,
            annotations: {
              'io.containerd.image.name': ref,
              'org.opencontainers.image.ref.name': tag,
            },
          },
        ],
      }),
    );
    await writeFile(join(layout, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
    const partial = join(work, 'image.tar');
    await run('tar', [
      '--create',
      `--file=${partial}`,
      ...REPRODUCIBLE_TAR,
      '-C',
      layout,
      'oci-layout',
      'index.json',
      'blobs',
    ]);
    // A rename within one directory tree: a concurrent reader sees the whole file or none.
    await rename(partial, path);
    return { ref, path };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
