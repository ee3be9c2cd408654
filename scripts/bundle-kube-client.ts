/**
 * The second step of `npm run build`, after tsc: dist/operator/kube-client.js again, with the part
 * of `@kubernetes/client-node` it uses bundled in (docs/adr/0025-kube-client-bundle.md).
 *
 * The package's entry point, and the module of its `KubeConfig`, load the clients of all 73 API
 * groups it generates, each with its three wrappers: about 35 MiB more resident memory in the
 * operator than the five it calls. esbuild keeps only the code reached from the names
 * `src/operator/kube-client.ts` imports. The project's own modules stay outside the bundle,
 * imported from the files tsc wrote beside it, so the process has one instance of each (one
 * `KubeApiError` class for `instanceof`). Whitespace is left out and syntax shortened, since a
 * module's text stays in memory while it runs; names are kept, so stack traces still name their
 * functions, and the source map beside it serves `node --enable-source-maps`.
 */
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build, type Metafile, type Plugin } from 'esbuild';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');

/** The module bundled, and the file it replaces. */
export const ENTRY = 'src/operator/kube-client.ts';
export const OUTFILE = 'dist/operator/kube-client.js';

/** The licenses of the packages in the bundle, beside it: the image carries no copy of them. */
export const LICENSES = 'dist/operator/kube-client.licenses.txt';

/** Imports of the project's own modules stay imports, of the `.js` files tsc writes. */
const ownModulesOutside: Plugin = {
  name: 'own-modules-outside',
  setup(b) {
    b.onResolve({ filter: /^\.\.?\// }, (args) =>
      args.importer.endsWith('.ts') && !args.importer.includes('/node_modules/')
        ? { path: args.path.replace(/\.ts$/, '.js'), external: true }
        : undefined,
    );
  },
};

/**
 * Bundles {@link ENTRY} into {@link OUTFILE} (`write` false: in memory only) and returns what
 * esbuild says about it: its inputs and imports.
 */
export async function bundleKubeClient(write: boolean): Promise<Metafile> {
  const result = await build({
    absWorkingDir: ROOT,
    entryPoints: [ENTRY],
    outfile: OUTFILE,
    write,
    bundle: true,
    format: 'esm',
    platform: 'node',
    target: 'node24',
    minifyWhitespace: true,
    minifySyntax: true,
    sourcemap: 'linked',
    plugins: [ownModulesOutside],
    // Bundled CommonJS packages call `require` for Node.js's own modules; an ES module has none.
    banner: {
      js: "import { createRequire as __bundleRequire } from 'node:module'; const require = __bundleRequire(import.meta.url);",
    },
    metafile: true,
    logLevel: 'warning',
  });
  return result.metafile;
}

/** The package directory of a bundled file under node_modules, or null for the project's own. */
export function packageDirOf(input: string): string | null {
  const parts = input.split(/[\\/]/);
  const at = parts.lastIndexOf('node_modules');
  if (at < 0) return null;
  const end = at + (parts[at + 1]?.startsWith('@') === true ? 3 : 2);
  if (parts.length <= end) return null;
  return parts.slice(0, end).join(sep);
}

/** A package's name, version and declared license, and the text of its license files. */
function licenseOf(dir: string): string {
  const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as {
    name: string;
    version: string;
    license?: string;
  };
  const files = readdirSync(dir).filter((f) => /^(licen[cs]e|copying|notice)/i.test(f));
  const texts = files.map((f) => readFileSync(join(dir, f), 'utf8').trim());
  const heading = `${pkg.name} ${pkg.version} (${pkg.license ?? 'no license declared'})`;
  const body = texts.length > 0 ? texts.join('\n\n') : 'The package holds no license file.';
  return `${heading}\n${'-'.repeat(heading.length)}\n${body}\n`;
}

/** The text of {@link LICENSES} for the inputs of a bundle. */
export function licenses(meta: Metafile): string {
  const dirs = new Set<string>();
  for (const input of Object.keys(meta.inputs)) {
    const dir = packageDirOf(join(ROOT, input));
    if (dir !== null && existsSync(join(dir, 'package.json'))) dirs.add(dir);
  }
  const texts = [...dirs].sort().map(licenseOf);
  return `The packages bundled into kube-client.js, and their licenses.\n\n${texts.join('\n')}`;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  writeFileSync(join(ROOT, LICENSES), licenses(await bundleKubeClient(true)));
}
