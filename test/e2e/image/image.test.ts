// The operator's image as built from the Dockerfile (the global setup builds it with
// scripts/build-image.sh): what it runs as, what it holds and what it must not hold (dev
// packages, a shell, the CA the build trusted), its size, the build cache, and the commands that
// need no server. Real processes: the Docker engine of the global setup and the containers it runs.
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { dockerOk } from '../../harness/docker.ts';
import {
  BASE_IMAGES,
  BUILD_CA_MARKER,
  buildCaFile,
  ensureImage,
  INPUTS_LABEL,
  saveImageTarball,
} from '../../harness/image.ts';
import {
  AS_THE_CHART_RUNS_IT,
  DATA_DIR,
  engine,
  image,
  nodeIn,
  NONROOT,
  removeAll,
  runToEnd,
} from './container.ts';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
const RUNTIME_BASE = BASE_IMAGES[1];

/** 400 MB: the image is about 240 MB; a dev dependency or a second Node.js would pass it. */
const MAX_IMAGE_BYTES = 400e6;
/** 15 s: a cached build hashes the inputs and asks the engine about one tag. */
const MAX_CACHED_BUILD_SECONDS = 15;

afterAll(removeAll);

interface ImageConfig {
  User: string;
  Env: string[];
  Entrypoint: string[];
  Cmd: string[];
  Volumes: Record<string, unknown> | null;
  Labels: Record<string, string>;
}

async function config(): Promise<ImageConfig> {
  return JSON.parse(
    await dockerOk(engine, ['image', 'inspect', '--format', '{{json .Config}}', image.ref]),
  ) as ImageConfig;
}

/** Every certificate of a PEM bundle, as its PEM block and its DER bytes. */
function certificates(
  pem: string,
): { pem: string; der: Buffer; subject: string; fingerprint: string }[] {
  return [...pem.matchAll(/-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g)].map(
    ([block]) => {
      const cert = new X509Certificate(block);
      return { pem: block, der: cert.raw, subject: cert.subject, fingerprint: cert.fingerprint256 };
    },
  );
}

describe('the image', () => {
  it('was built by scripts/build-image.sh, and a second build with the same inputs returns at once', async () => {
    console.log(
      `image ${image.ref}: ${image.built ? 'built' : 'cached'} in ${image.seconds.toFixed(1)} s by the global setup, ${(image.sizeBytes / 1e6).toFixed(0)} MB`,
    );
    const again = await ensureImage(engine);
    console.log(`image ${again.ref}: cached build in ${again.seconds.toFixed(1)} s`);
    expect(again.built).toBe(false);
    expect(again.ref).toBe(image.ref);
    expect(again.id).toBe(image.id);
    expect(again.seconds).toBeLessThan(MAX_CACHED_BUILD_SECONDS);
    // The chart's default image is the same build.
    expect(
      (await dockerOk(engine, ['image', 'inspect', '--format', '{{.Id}}', image.chartRef])).trim(),
    ).toBe(image.id);
    expect(image.chartRef).toBe(`kube-audit-operator:${pkg.version}`);
    expect(image.ref).toMatch(new RegExp(`^kube-audit-operator:${pkg.version}-[0-9a-f]{12}$`));
    expect((await config()).Labels[INPUTS_LABEL]).toMatch(/^[0-9a-f]{64}$/);
  });

  it(`stays under ${MAX_IMAGE_BYTES / 1e6} MB`, () => {
    expect(image.sizeBytes).toBeLessThan(MAX_IMAGE_BYTES);
  });

  it('runs as user 65532, with the data directory as a volume and the default command run', async () => {
    const c = await config();
    expect(c.User).toBe(String(NONROOT));
    expect(c.Entrypoint).toEqual([
      '/nodejs/bin/node',
      '--no-concurrent-recompilation',
      '--no-allocation-site-pretenuring',
      '/app/dist/main.js',
    ]);
    expect(c.Cmd).toEqual(['run']);
    expect(Object.keys(c.Volumes ?? {})).toEqual([DATA_DIR]);
    expect(c.Env).toContain(`KUBE_AUDIT_DATA_DIR=${DATA_DIR}`);
    expect(c.Env).toContain('NODE_ENV=production');
    const seen = JSON.parse(
      await nodeIn(`
        const fs = await import('node:fs');
        const stat = (p) => { const s = fs.statSync(p); return { uid: s.uid, gid: s.gid, mode: s.mode & 0o7777 }; };
        console.log(JSON.stringify({
          uid: process.getuid(), gid: process.getgid(), node: process.versions.node,
          data: stat('${DATA_DIR}'), app: stat('/app'), dist: stat('/app/dist/main.js'),
          shells: ['/bin/sh', '/bin/bash', '/usr/bin/sh', '/bin/dash', '/busybox/sh'].filter((p) => fs.existsSync(p)),
        }));`),
    ) as Record<string, unknown>;
    expect(seen).toMatchObject({
      uid: NONROOT,
      gid: NONROOT,
      data: { uid: NONROOT, gid: NONROOT, mode: 0o700 },
      app: { uid: 0 },
      dist: { uid: 0 },
      shells: [],
    });
    expect(String(seen.node)).toMatch(/^24\./);
  });

  it("holds every production dependency of the lockfile and no dev one, and the bundled ones' licenses", async () => {
    const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8')) as {
      packages: Record<string, { dev?: boolean; optional?: boolean; devOptional?: boolean }>;
    };
    const paths = Object.entries(lock.packages).filter(([path]) =>
      path.startsWith('node_modules/'),
    );
    const dev = paths.filter(([, p]) => p.dev === true).map(([path]) => path);
    const prod = paths
      .filter(([, p]) => p.dev !== true && p.optional !== true && p.devOptional !== true)
      .map(([path]) => path);
    expect(dev).toContain('node_modules/typescript');
    expect(dev).toContain('node_modules/node');
    // Bundled into dist/operator/kube-client.js by the build, with the licenses beside it.
    expect(dev).toContain('node_modules/@kubernetes/client-node');
    expect(prod).toContain('node_modules/fastify');
    const present = JSON.parse(
      await nodeIn(`
        const fs = await import('node:fs');
        const all = ${JSON.stringify([...dev, ...prod])};
        console.log(JSON.stringify(all.filter((p) => fs.existsSync('/app/' + p + '/package.json'))));`),
    ) as string[];
    expect(present.filter((p) => dev.includes(p))).toEqual([]);
    expect(prod.filter((p) => !present.includes(p))).toEqual([]);
    const licenses = await nodeIn(`
        const fs = await import('node:fs');
        process.stdout.write(fs.readFileSync('/app/dist/operator/kube-client.licenses.txt', 'utf8'));`);
    expect(licenses).toContain('\n@kubernetes/client-node ');
    expect(licenses).toContain('Apache License');
  });

  it('holds no certificate of the CA file the build trusted, in any layer or its configuration', async () => {
    // The build's secret: this machine's bundle and the tests' own marker (test/harness/image.ts).
    const trusted = certificates(await readFile(await buildCaFile(), 'utf8'));
    // What the runtime base already trusts is no leak: its CA bundle (Debian's roots, as
    // distroless ships) and the roots compiled into its Node.js binary.
    const baseCertificates = certificates(
      await nodeIn(
        `const fs = await import('node:fs'); const tls = await import('node:tls');
           process.stdout.write(fs.readFileSync('/etc/ssl/certs/ca-certificates.crt', 'utf8') + tls.rootCertificates.join('\\n'))`,
        [],
        RUNTIME_BASE,
      ),
    );
    const base = new Set(baseCertificates.map((c) => c.fingerprint));
    const extra = trusted.filter((c) => !base.has(c.fingerprint));
    const marker = certificates(readFileSync(BUILD_CA_MARKER, 'utf8'))[0];
    expect(extra.map((c) => c.subject)).toContain(marker?.subject);
    console.log(
      `build CA file: ${trusted.length} certificates, ${extra.length} not in the runtime base: ${extra.map((c) => c.subject.replaceAll('\n', ', ')).join('; ')}`,
    );
    // `docker save` holds each layer as an uncompressed tar and the configuration as JSON: a file
    // of any layer (deleted by a later one or not) is in it byte for byte.
    const saved = await readFile(await saveImageTarball(engine, image));
    const baseSample = baseCertificates[0];
    expect(baseSample, 'the runtime base trusts some CA').toBeDefined();
    // The search finds a certificate that is there: one the base trusts.
    expect(saved.includes(Buffer.from(baseSample?.pem ?? '-'))).toBe(true);
    const leaked = extra.filter((c) => saved.includes(Buffer.from(c.pem)) || saved.includes(c.der));
    expect(leaked.map((c) => c.subject)).toEqual([]);
    // The image adds three variables to its base's, none about certificates: the data directory,
    // the environment and V8's heap limits (ADR 0021), as its Dockerfile sets them.
    const nodeOptions = /^ENV NODE_OPTIONS="([^"]*)"$/m.exec(
      readFileSync(join(ROOT, 'Dockerfile'), 'utf8'),
    )?.[1];
    expect(nodeOptions).toBeDefined();
    const baseEnv = JSON.parse(
      await dockerOk(engine, [
        'image',
        'inspect',
        '--format',
        '{{json .Config.Env}}',
        RUNTIME_BASE,
      ]),
    ) as string[];
    expect((await config()).Env.filter((e) => !baseEnv.includes(e)).sort()).toEqual([
      `KUBE_AUDIT_DATA_DIR=${DATA_DIR}`,
      'NODE_ENV=production',
      `NODE_OPTIONS=${nodeOptions ?? ''}`,
    ]);
  });
});

describe('commands that need no server', () => {
  it('prints the version', async () => {
    const { code, output } = await runToEnd(AS_THE_CHART_RUNS_IT, ['--version']);
    expect(code, output).toBe(0);
    expect(output.trim()).toBe(pkg.version);
  });

  it('lints a policy mounted read-only, as the README shows', async () => {
    const { code, output } = await runToEnd(
      [...AS_THE_CHART_RUNS_IT, '-v', `${join(ROOT, 'examples', 'policies')}:/policies:ro`],
      ['policy', 'lint', '--strict', '/policies/cluster-baseline.yaml'],
    );
    expect(code, output).toBe(0);
  });

  it('replays an audit log into the default data directory', async () => {
    const fixtures = join(ROOT, 'test', 'fixtures', 'apiserver-1.20');
    const events = readFileSync(join(fixtures, 'events.jsonl'), 'utf8').split('\n').filter(Boolean);
    const { code, output } = await runToEnd(
      [
        ...AS_THE_CHART_RUNS_IT,
        '-v',
        `${join(ROOT, 'examples', 'standalone')}:/manifests:ro`,
        '-v',
        `${fixtures}:/events:ro`,
      ],
      ['replay', '--events', '/events/events.jsonl', '-f', '/manifests'],
    );
    expect(code, output).toBe(0);
    expect(output).toContain(`replayed ${events.length} events`);
    expect(output).toContain(`AuditSink/cluster-trail: kept ${events.length}`);
  });
});
