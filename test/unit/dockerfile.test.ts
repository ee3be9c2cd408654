// The container image's invariants, read from the Dockerfile and .dockerignore (no Docker engine is
// needed): a multi-stage build, a distroless Node.js 24 runtime that matches the project's Node.js,
// a non-root user, nothing in the runtime stage but the compiled code, the production
// dependencies, package.json and the chart's data directory owned by that user, and a build CA
// that reaches no layer. Starts no process but this `node` once, with the entrypoint's flags.
// test/e2e/image/ builds and runs the image.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { shippedNodeFlags } from '../harness/standalone.ts';

const root = new URL('../../', import.meta.url);
const read = (path: string) => readFileSync(new URL(path, root), 'utf8');

/** One Dockerfile instruction: `COPY --from=build /a /b` is `{ keyword: 'COPY', args: '...' }`. */
interface Instruction {
  readonly keyword: string;
  readonly args: string;
}

/** A build stage: its base image, its name and its instructions after FROM. */
interface Stage {
  readonly from: string;
  readonly name: string | undefined;
  readonly instructions: Instruction[];
}

/** Splits a Dockerfile into stages: comments dropped, `\` continuation lines joined. */
function parseDockerfile(text: string): Stage[] {
  const logical: string[] = [];
  let pending = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (pending === '' && (line === '' || line.startsWith('#'))) continue;
    if (line.startsWith('#')) continue; // a comment inside a continued instruction
    if (line.endsWith('\\')) {
      pending += `${line.slice(0, -1).trim()} `;
      continue;
    }
    logical.push(`${pending}${line}`.trim());
    pending = '';
  }
  expect(pending, 'a continued line at the end of the file').toBe('');
  const stages: Stage[] = [];
  for (const line of logical) {
    const match = /^(\w+)\s+(.*)$/s.exec(line);
    if (match === null) throw new Error(`not an instruction: ${line}`);
    const keyword = (match[1] as string).toUpperCase();
    const args = match[2] as string;
    if (keyword === 'FROM') {
      const [image, as, name] = args.split(/\s+/);
      stages.push({
        from: image as string,
        name: as?.toUpperCase() === 'AS' ? name : undefined,
        instructions: [],
      });
    } else {
      const stage = stages.at(-1);
      if (stage === undefined) throw new Error(`${keyword} before the first FROM`);
      stage.instructions.push({ keyword, args });
    }
  }
  return stages;
}

/** The JSON (exec) form of ENTRYPOINT or CMD; the shell form would need a shell distroless lacks. */
function execForm(stage: Stage, keyword: string): unknown {
  const found = stage.instructions.filter((i) => i.keyword === keyword);
  expect(found, `one ${keyword}`).toHaveLength(1);
  return JSON.parse((found[0] as Instruction).args);
}

const stages = parseDockerfile(read('Dockerfile'));
const build = stages[0] as Stage;
const runtime = stages.at(-1) as Stage;
/** The data directory the chart mounts its spool volume on (templates/_helpers.tpl). */
const chartDataDir = (() => {
  const helpers = read('charts/kube-audit-operator/templates/_helpers.tpl');
  const path = /define "kube-audit-operator\.dataDir" -\}\}([^{]+)\{\{/.exec(helpers)?.[1];
  if (path === undefined) throw new Error('no kube-audit-operator.dataDir in _helpers.tpl');
  return path.trim();
})();
const pkg = JSON.parse(read('package.json')) as {
  devDependencies: Record<string, string>;
  dependencies: Record<string, string>;
};

describe('Dockerfile', () => {
  it('builds in one stage and runs in another', () => {
    expect(stages.length).toBeGreaterThanOrEqual(2);
    expect(build.name).toBeDefined();
    expect(runtime.name).toBeUndefined();
  });

  it('builds on a Debian Node.js 24 image', () => {
    expect(build.from).toMatch(/^node:24-(bookworm|trixie)(-slim)?$/);
  });

  it('runs on the distroless Node.js 24 image as its non-root variant', () => {
    expect(runtime.from).toBe('gcr.io/distroless/nodejs24-debian12:nonroot');
  });

  it('uses the Node.js major version the project itself runs on', () => {
    // package.json pins Node.js through the `node` dev dependency (ADR 0001).
    const major = /^\^?(\d+)/.exec(pkg.devDependencies.node ?? '')?.[1];
    expect(major).toBe('24');
    expect(build.from).toContain(`node:${major}-`);
    expect(runtime.from).toContain(`nodejs${major}-`);
  });

  it('installs with the lockfile, builds, then keeps production dependencies only', () => {
    const runs = build.instructions.filter((i) => i.keyword === 'RUN').map((i) => i.args);
    const ci = runs.findIndex((r) => /\bnpm ci\b/.test(r) && !r.includes('--omit=dev'));
    const compile = runs.findIndex((r) => /\bnpm run build\b/.test(r));
    const prune = runs.findIndex((r) => /\bnpm ci\b.*--omit=dev/.test(r));
    expect(ci).toBeGreaterThanOrEqual(0);
    expect(compile).toBeGreaterThan(ci);
    expect(prune).toBeGreaterThan(compile);
    // `node` is a dev dependency: its own Node.js binary must not reach the runtime image.
    expect(pkg.devDependencies).toHaveProperty('node');
    expect(pkg.dependencies).not.toHaveProperty('node');
  });

  it('copies the lockfile and sources the build needs, and nothing of the tests', () => {
    const sources = build.instructions
      .filter((i) => i.keyword === 'COPY')
      .flatMap((i) =>
        i.args
          .split(/\s+/)
          .filter((a) => !a.startsWith('--'))
          .slice(0, -1),
      );
    expect(sources).toEqual(
      expect.arrayContaining([
        'package.json',
        'package-lock.json',
        'tsconfig.build.json',
        'scripts/bundle-kube-client.ts',
        'src',
      ]),
    );
    for (const source of sources) expect(source).not.toMatch(/^(test|bench|\.)($|\/)/);
  });

  it('copies only dist, the production node_modules, package.json and the data directory into the runtime image', () => {
    const copies = runtime.instructions.filter((i) => i.keyword === 'COPY' || i.keyword === 'ADD');
    const copied = copies.map((i) => {
      expect(i.keyword).toBe('COPY');
      const words = i.args.split(/\s+/);
      expect(words).toContain(`--from=${build.name}`);
      return words.filter((w) => !w.startsWith('--')).slice(0, -1);
    });
    expect(copied.flat().sort()).toEqual([
      '/app/dist',
      '/app/node_modules',
      '/app/package.json',
      '/data/',
    ]);
  });

  it('leaves the code owned by root and gives only the data directory to user 65532', () => {
    const owned = runtime.instructions.filter(
      (i) => i.keyword === 'COPY' && i.args.includes('--chown'),
    );
    expect(owned.map((i) => i.args.split(/\s+/))).toEqual([
      ['--from=build', '--chown=65532:65532', '/data/', '/var/lib/'],
    ]);
    // /data holds the data directory alone, created empty and private in the build stage (the
    // runtime stage has no shell to do it).
    const name = chartDataDir.replace(/^\/var\/lib\//, '');
    expect(name).not.toContain('/');
    expect(build.instructions).toContainEqual({
      keyword: 'RUN',
      args: `install -d -m 0700 /data/${name}`,
    });
  });

  it("defaults every command's data directory to the chart's, a volume even with --read-only", () => {
    expect(runtime.instructions).toContainEqual({
      keyword: 'ENV',
      args: `KUBE_AUDIT_DATA_DIR=${chartDataDir}`,
    });
    expect(runtime.instructions).toContainEqual({ keyword: 'VOLUME', args: chartDataDir });
  });

  it('sets V8’s heap limits in NODE_OPTIONS, the chart’s default nodeOptions', () => {
    const env = runtime.instructions.filter(
      (i) => i.keyword === 'ENV' && i.args.startsWith('NODE_OPTIONS='),
    );
    expect(env).toHaveLength(1);
    // bench/peer.ts reads this exact form to run the process as it ships.
    const options = /^NODE_OPTIONS="([^"]*)"$/.exec((env[0] as Instruction).args)?.[1];
    expect(options).toMatch(/(^| )--max-semi-space-size=\d+( |$)/);
    expect(options).toMatch(/(^| )--max-old-space-size=\d+( |$)/);
    const values = read('charts/kube-audit-operator/values.yaml');
    expect(/^nodeOptions: "([^"]*)"$/m.exec(values)?.[1]).toBe(options);
  });

  it('trusts an extra CA only as a build secret mounted into the npm steps', () => {
    const mounting = stages.flatMap((stage) =>
      stage.instructions
        .filter((i) => i.args.includes('build-ca'))
        .map((i) => ({ stage: stage.name, keyword: i.keyword, args: i.args })),
    );
    expect(mounting.length).toBeGreaterThanOrEqual(1);
    for (const use of mounting) {
      // Never copied, never an ENV or ARG (both are recorded in the image), never in the runtime stage.
      expect(use.stage).toBe(build.name);
      expect(use.keyword).toBe('RUN');
      expect(use.args).toMatch(/^--mount=type=secret,id=build-ca\s/);
      expect(use.args).toMatch(/\bnpm ci\b/);
    }
    for (const stage of stages) {
      for (const i of stage.instructions) {
        if (i.keyword === 'ENV' || i.keyword === 'ARG')
          expect(i.args).not.toMatch(/CA_CERT|SSL_CERT/);
      }
    }
  });

  it('creates /app by copying into it as root, not by WORKDIR as the base image user', () => {
    const keywords = runtime.instructions.map((i) => i.keyword);
    const workdir = keywords.indexOf('WORKDIR');
    const lastAppCopy = runtime.instructions.findLastIndex(
      (i) => i.keyword === 'COPY' && /\s\/app\/\S*$/.test(i.args),
    );
    expect(lastAppCopy).toBeGreaterThanOrEqual(0);
    expect(workdir === -1 || workdir > lastAppCopy).toBe(true);
  });

  it('runs nothing in the runtime stage, which has no shell', () => {
    expect(runtime.instructions.filter((i) => i.keyword === 'RUN')).toEqual([]);
  });

  it('runs as the numeric non-root user 65532', () => {
    const users = runtime.instructions.filter((i) => i.keyword === 'USER');
    expect(users).toHaveLength(1);
    const uid = (users[0] as Instruction).args.split(':')[0];
    expect(uid).toBe('65532');
  });

  it('starts the compiled main module with `run` as the default command', () => {
    expect(execForm(runtime, 'ENTRYPOINT')).toEqual([
      '/nodejs/bin/node',
      '--no-concurrent-recompilation',
      '--no-allocation-site-pretenuring',
      '/app/dist/main.js',
    ]);
    expect(execForm(runtime, 'CMD')).toEqual(['run']);
  });

  it('gives node only flags this Node.js accepts, and the benchmarks the same ones', () => {
    const flags = shippedNodeFlags();
    expect(flags).toEqual(['--no-concurrent-recompilation', '--no-allocation-site-pretenuring']);
    // An unknown flag makes node exit 9 ("bad option") before it runs anything.
    const run = spawnSync(process.execPath, [...flags, '-e', 'process.stdout.write("ok")'], {
      encoding: 'utf8',
      env: { ...process.env, NODE_OPTIONS: '' },
    });
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
    expect(run.stdout).toBe('ok');
  });

  it('points at the file tsc writes for src/main.ts', () => {
    const build = JSON.parse(read('tsconfig.build.json')) as {
      compilerOptions: { rootDir: string; outDir: string };
    };
    expect(build.compilerOptions).toMatchObject({ rootDir: 'src', outDir: 'dist' });
    expect(read('src/main.ts')).toContain('run(process.argv.slice(2)');
  });
});

describe('.dockerignore', () => {
  const entries = read('.dockerignore')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));

  it.each(['node_modules', '.git', 'test', 'bench', 'dist'])('keeps %s out of the context', (p) => {
    expect(entries).toContain(p);
  });

  it('keeps in everything the build stage copies', () => {
    const copied = build.instructions
      .filter((i) => i.keyword === 'COPY')
      .flatMap((i) =>
        i.args
          .split(/\s+/)
          .filter((a) => !a.startsWith('--'))
          .slice(0, -1),
      );
    for (const path of copied) {
      // Docker applies the entries in order, the last match winning; `!` brings a path back in.
      let excluded = false;
      for (const e of entries) {
        const pattern = e.startsWith('!') ? e.slice(1) : e;
        const matches =
          pattern === path ||
          path.startsWith(`${pattern}/`) ||
          (pattern.startsWith('*') && path.endsWith(pattern.slice(1)));
        if (matches) excluded = !e.startsWith('!');
      }
      expect(excluded, `${path} is excluded by .dockerignore`).toBe(false);
    }
  });
});
