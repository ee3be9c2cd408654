// The build's bundle of the Kubernetes client (scripts/bundle-kube-client.ts,
// docs/adr/0025-kube-client-bundle.md): dist/operator/kube-client.js carries the part of
// @kubernetes/client-node it uses and imports the project's own modules from the files tsc wrote.
// Runs `npm run build` once first if dist/main.js is missing.
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { Metafile } from 'esbuild';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  bundleKubeClient,
  ENTRY,
  LICENSES,
  licenses,
  OUTFILE,
  packageDirOf,
} from '../../scripts/bundle-kube-client.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const NODE_MODULES = 'node_modules/';
const CLIENT = `${NODE_MODULES}@kubernetes/client-node/`;
/** An import of the client in built JavaScript: tsc writes `from '…'`, esbuild `from"…"`. */
const LOADS_CLIENT = /(?:from|import\s*\()\s*['"]@kubernetes\/client-node['"]/;

let meta: Metafile;

beforeAll(async () => {
  meta = await bundleKubeClient(false);
  if (!existsSync(join(ROOT, 'dist', 'main.js'))) {
    await promisify(execFile)('npm', ['run', 'build'], { cwd: ROOT });
  }
}, 120_000);

describe('the Kubernetes client bundle', () => {
  const output = () => {
    const out = meta.outputs[OUTFILE];
    if (out === undefined) throw new Error(`${OUTFILE} is not an output of the build`);
    return out;
  };

  it('holds the client, and of the project only the module it replaces', () => {
    const inputs = Object.keys(output().inputs);
    expect(inputs.filter((i) => i.startsWith(CLIENT)).length).toBeGreaterThan(0);
    expect(inputs.filter((i) => !i.includes('node_modules/'))).toEqual([ENTRY]);
  });

  it('keeps only the generated API modules the operator calls', () => {
    const apis = Object.keys(output().inputs)
      .filter((i) => i.startsWith(`${CLIENT}dist/gen/apis/`))
      .map((i) => /([A-Za-z0-9]+)\.js$/.exec(i)?.[1])
      .filter((name) => name?.endsWith('Api'))
      .sort();
    // What src/operator/kube-client.ts imports, of the 73 the package loads (besides their base
    // class and exception).
    expect(apis).toEqual([
      'ApisApi',
      'AuthenticationV1Api',
      'AuthorizationV1Api',
      'CoreV1Api',
      'CustomObjectsApi',
    ]);
  });

  it('imports only Node.js and the files tsc wrote beside it', () => {
    const builtins = new Set(builtinModules.flatMap((m) => [m, `node:${m}`]));
    const imports = output().imports.filter((i) => i.kind !== 'require-call' || i.external);
    const own = imports.filter((i) => i.path.startsWith('.'));
    expect(own.map((i) => i.path)).toContain('./kube.js');
    for (const i of own)
      expect(existsSync(join(ROOT, dirname(OUTFILE), i.path)), i.path).toBe(true);
    // `ws` asks for its native helpers, and `debug` for colours, inside a `try`.
    const optional = ['bufferutil', 'utf-8-validate', 'supports-color'];
    const others = imports.filter(
      (i) => !i.path.startsWith('.') && !builtins.has(i.path) && !optional.includes(i.path),
    );
    expect(others.map((i) => i.path)).toEqual([]);
  });

  it('is the only built module that loads the client, which the image does not carry', () => {
    const modules = readdirSync(join(ROOT, 'dist'), { recursive: true, encoding: 'utf8' }).filter(
      (file) => file.endsWith('.js') && join('dist', file) !== OUTFILE,
    );
    expect(modules.length).toBeGreaterThan(50);
    const loading = modules.filter((file) =>
      LOADS_CLIENT.test(readFileSync(join(ROOT, 'dist', file), 'utf8')),
    );
    expect(loading).toEqual([]);
  });

  it('is what dist/ holds, and loads', async () => {
    const built = readFileSync(join(ROOT, OUTFILE), 'utf8');
    expect(built).not.toMatch(LOADS_CLIENT);
    expect(built).toContain('kube-client.js.map');
    const { stdout } = await promisify(execFile)(process.execPath, [
      '--input-type=module',
      '-e',
      `const m = await import(${JSON.stringify(join(ROOT, OUTFILE))});
       console.log(typeof m.ClientNodeKubeApi, typeof m.loadKubeConfig);`,
    ]);
    expect(stdout.trim()).toBe('function function');
  });

  it('has the license of every package in it beside it', () => {
    const text = readFileSync(join(ROOT, LICENSES), 'utf8');
    expect(text).toBe(licenses(meta));
    const packages = new Set(
      Object.keys(output().inputs).flatMap((i) => {
        const dir = packageDirOf(i);
        return dir === null ? [] : [dir.slice(dir.lastIndexOf(NODE_MODULES) + NODE_MODULES.length)];
      }),
    );
    expect(packages.size).toBeGreaterThan(10);
    // Each under a heading of its name, version and license.
    for (const name of packages) expect(text).toContain(`\n${name} `);
    expect(text).toContain('Permission is hereby granted');
  });
});

describe('packageDirOf', () => {
  it('finds the package of a bundled file, scoped or nested', () => {
    expect(packageDirOf('/r/node_modules/ws/lib/sender.js')).toBe('/r/node_modules/ws');
    expect(packageDirOf('/r/node_modules/@kubernetes/client-node/dist/config.js')).toBe(
      '/r/node_modules/@kubernetes/client-node',
    );
    expect(packageDirOf('/r/node_modules/a/node_modules/b/index.js')).toBe(
      '/r/node_modules/a/node_modules/b',
    );
  });

  it('answers null for the project own files and a path that stops at a scope', () => {
    expect(packageDirOf('/r/src/operator/kube-client.ts')).toBeNull();
    expect(packageDirOf('/r/node_modules/@scope')).toBeNull();
  });
});
