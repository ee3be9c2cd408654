// The examples of the pages in docs/ are real: every YAML block is loaded the way the product
// loads it, and every command shown with its output prints that output. Pure: runs the CLI
// in-process on files (and a temporary directory for the policies the pages lint).
//
// What each block must be, by what it holds or the marker comment before it:
// - `<!-- file: path -->`: the file at path, byte for byte;
// - an audit Policy: loads without warnings, unless `<!-- lint: name -->` follows it, in which case
//   the next console block shows what `policy lint` prints for it, saved under that name;
// - an AuditSink or AuditPipeline: becomes a sink, as the operator builds it;
// - an auditregistration.k8s.io/v1alpha1 AuditSink: becomes a sink once its apiVersion is changed;
// - anything else: parses, with apiVersion and kind;
// - a console block after `<!-- eval -->` or `<!-- lint: name -->`: its `$` command, run, prints
//   its output lines.
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { afterAll, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { run } from '../../src/cli/program.ts';
import { loadPolicies } from '../../src/policy/load.ts';
import { sinkFromResource } from '../../src/sinks/spec.ts';

const root = new URL('../../', import.meta.url);
const docs = new URL('docs/', root);
const pages = readdirSync(docs).filter((f) => f.endsWith('.md'));

/** A fenced code block and the marker comment right before it, if any. */
interface Block {
  readonly page: string;
  readonly line: number;
  readonly lang: string;
  readonly body: string;
  readonly marker: string | undefined;
}

function blocks(page: string): Block[] {
  const text = readFileSync(new URL(page, docs), 'utf8');
  const found: Block[] = [];
  const re = /(?:<!-- ([^>]*?) -->\n\n)?```(\w*)\n([\s\S]*?)```/g;
  for (const m of text.matchAll(re)) {
    found.push({
      page,
      line: text.slice(0, m.index).split('\n').length,
      lang: m[2] as string,
      body: m[3] as string,
      marker: m[1],
    });
  }
  return found;
}

const all = pages.flatMap(blocks);
const yamlBlocks = all.filter((b) => b.lang === 'yaml');
const consoleBlocks = all.filter((b) => b.lang === 'console' && b.marker !== undefined);
const where = (b: Block) => `${b.page}:${b.line}`;

const settings = { clusterWideNamespaces: ['kube-audit'], requireDestination: true };
const tmp = mkdtempSync(join(tmpdir(), 'kao-docs-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** Runs the CLI in-process; stdout and stderr interleaved as written, and the exit code. */
async function cli(argv: string[]): Promise<{ lines: string[]; code: number }> {
  let out = '';
  const sink = () => {
    const stream = new PassThrough();
    stream.on('data', (chunk: Buffer) => (out += chunk.toString('utf8')));
    return stream;
  };
  const code = await run(argv, { stdin: Readable.from([]), stdout: sink(), stderr: sink() });
  await new Promise((resolve) => setImmediate(resolve));
  return { lines: out.split('\n').filter((l) => l !== ''), code };
}

/** The `$` command of a console block (continuation lines joined) and its output lines. */
function command(block: Block): { argv: string[]; grep: RegExp | undefined; output: string[] } {
  const lines = block.body.split('\n').filter((l) => l !== '');
  let cmd = '';
  let i = 0;
  for (; i < lines.length; i++) {
    const line = (lines[i] as string).replace(/^\$ /, '').trim();
    cmd += ` ${line.replace(/\\$/, '')}`;
    if (!line.endsWith('\\')) break;
  }
  const [main, filter] = cmd.split(' | grep -E ');
  const words = (main as string).trim().split(/\s+/);
  // The built CLI, as `node dist/main.js` or `npm start --`.
  const prefix = words[0] === 'npm' ? ['npm', 'start', '--'] : ['node', 'dist/main.js'];
  expect(words.slice(0, prefix.length), `${where(block)}: runs the built CLI`).toEqual(prefix);
  return {
    argv: words.slice(prefix.length),
    grep: filter === undefined ? undefined : new RegExp(filter.trim().replace(/^'|'$/g, '')),
    output: lines.slice(i + 1),
  };
}

describe('the YAML examples of docs/', () => {
  it('has examples to check', () => {
    expect(yamlBlocks.length).toBeGreaterThan(5);
  });

  it.each(yamlBlocks.map((b) => [where(b), b] as const))('%s is what it says', (_, block) => {
    const file = /^file: (\S+)$/.exec(block.marker ?? '')?.[1];
    if (file !== undefined) {
      expect(block.body).toBe(readFileSync(new URL(file, root), 'utf8'));
      return;
    }
    const lintTarget = all.find((b) => b.page === block.page && b.line > block.line)?.marker;
    const docsOf = parseAllDocuments(block.body);
    for (const doc of docsOf) {
      expect(doc.errors).toEqual([]);
      const value = doc.toJS() as Record<string, unknown>;
      expect(value.apiVersion, 'apiVersion').toEqual(expect.any(String));
      expect(value.kind, 'kind').toEqual(expect.any(String));
      if (value.kind === 'Policy') {
        // A policy shown to be linted is checked with its console block below.
        if (lintTarget?.startsWith('lint: ') === true) continue;
        const loaded = loadPolicies(doc.toString(), where(block));
        expect(loaded.flatMap((l) => l.warnings)).toEqual([]);
      } else if (value.apiVersion === 'kube-audit.dev/v1alpha1') {
        expect(() => sinkFromResource(value, settings)).not.toThrow();
      } else if (value.apiVersion === 'auditregistration.k8s.io/v1alpha1') {
        expect(value.kind).toBe('AuditSink');
        expect(() =>
          sinkFromResource({ ...value, apiVersion: 'kube-audit.dev/v1alpha1' }, settings),
        ).not.toThrow();
      }
    }
  });
});

describe('the commands of docs/', () => {
  it.each(consoleBlocks.map((b) => [where(b), b] as const))(
    '%s prints what the page shows',
    async (_, block) => {
      const lint = /^lint: (\S+)$/.exec(block.marker ?? '')?.[1];
      const { argv, grep, output } = command(block);
      if (lint !== undefined) {
        // The YAML block right before the marker, saved under the name the command uses.
        const policy = yamlBlocks
          .filter((b) => b.page === block.page && b.line < block.line)
          .at(-1);
        expect(policy, `${where(block)}: a policy block before it`).toBeDefined();
        writeFileSync(join(tmp, lint), policy?.body ?? '');
        const result = await cli(argv.map((a) => (a === lint ? join(tmp, lint) : a)));
        expect(result.lines.map((l) => l.replaceAll(`${tmp}/`, ''))).toEqual(output);
        expect(result.code, 'a lint that reports problems fails').toBe(1);
        return;
      }
      expect(block.marker).toBe('eval');
      const result = await cli(argv);
      expect(result.code).toBe(0);
      const shown = grep === undefined ? result.lines : result.lines.filter((l) => grep.test(l));
      expect(shown).toEqual(output);
    },
  );
});
