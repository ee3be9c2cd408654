// Runs the built CLI binary (`node dist/main.js`) as child processes, as a user would; runs
// `npm run build` once first if dist/main.js is missing.
import { execFile, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const MAIN = join(ROOT, 'dist', 'main.js');

// Paths as a user in the repository would type them; the CLI runs with the repository as cwd.
const FIXTURES = 'test/fixtures/apiserver-1.20';
const POLICY = `${FIXTURES}/audit-policy.yaml`;
const EVENTS = `${FIXTURES}/events.jsonl`;
const BATCHES = [`${FIXTURES}/batches/00001.json`, `${FIXTURES}/batches/00002.json`];

/** The key order of a `policy eval` line is part of its contract. */
const EVAL_KEYS = ['auditID', 'stage', 'level', 'omitStages', 'omitManagedFields', 'emitted'];

// A Node stack frame, as an uncaught error would print it.
const STACK_FRAME = '    at ';

interface Recorded {
  readonly auditID: string;
  readonly level: string;
  readonly stage: string;
  readonly verb: string;
  readonly objectRef?: { readonly resource?: string };
}

interface EvalLine {
  readonly auditID: string;
  readonly stage: string;
  readonly level: string;
  readonly omitStages: string[];
  readonly omitManagedFields: boolean;
  readonly emitted: boolean;
}

interface Run {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs the CLI with `args`, feeding `stdin`, and collects its output and exit code. */
function cli(args: readonly string[], stdin = ''): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [MAIN, ...args], { cwd: ROOT });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk;
    });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk;
    });
    // A command that never reads stdin may exit before we finish writing it.
    child.stdin.on('error', () => {});
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(stdin);
  });
}

/** A pattern matching strings that begin with `text`, taken literally. */
function prefixPattern(text: string): RegExp {
  return new RegExp(`^${text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`);
}

function outputLines(run: Run): string[] {
  return run.stdout.split('\n').filter((line) => line !== '');
}

function evalLines(run: Run): EvalLine[] {
  return outputLines(run).map((line) => JSON.parse(line) as EvalLine);
}

const eventsText = readFileSync(join(ROOT, EVENTS), 'utf8');
const recorded: Recorded[] = eventsText
  .split('\n')
  .filter((line) => line !== '')
  .map((line) => JSON.parse(line) as Recorded);

let dir = '';

/** Writes `text` to a file in this run's temporary directory and returns its path. */
async function tempFile(name: string, text: string): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, text);
  return path;
}

beforeAll(async () => {
  if (!existsSync(MAIN)) {
    await promisify(execFile)('npm', ['run', 'build'], { cwd: ROOT });
  }
  dir = await mkdtemp(join(tmpdir(), 'policy-cli-test-'));
}, 120_000);

afterAll(async () => {
  if (dir !== '') await rm(dir, { recursive: true, force: true });
});

describe('policy eval with the recorded kube-apiserver 1.20 policy and events', () => {
  it('prints one JSON line per event, in input order, with exactly the documented keys', async () => {
    const run = await cli(['policy', 'eval', '--policy', POLICY, '--events', EVENTS]);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    const lines = outputLines(run);
    expect(lines).toHaveLength(recorded.length);
    for (const line of lines) {
      expect(Object.keys(JSON.parse(line) as object)).toEqual(EVAL_KEYS);
    }
    expect(evalLines(run).map((l) => l.auditID)).toEqual(recorded.map((e) => e.auditID));
    expect(evalLines(run).map((l) => l.stage)).toEqual(recorded.map((e) => e.stage));
  });

  it('decides for every recorded event the level the kube-apiserver recorded', async () => {
    const run = await cli(['policy', 'eval', '--policy', POLICY, '--events', EVENTS]);
    expect(run.code).toBe(0);
    expect(evalLines(run).map((l) => l.level)).toEqual(recorded.map((e) => e.level));
  });

  // The decided level is capped by the event's own level; with every event claiming the highest
  // level, the output is the rule's level alone, which must still be what the apiserver chose.
  it("matches the apiserver's level by rule alone, not by capping at the event's level", async () => {
    const raised = eventsText
      .split('\n')
      .filter((line) => line !== '')
      .map((line) => JSON.stringify({ ...JSON.parse(line), level: 'RequestResponse' }))
      .join('\n');
    const run = await cli(['policy', 'eval', '--policy', POLICY], `${raised}\n`);
    expect(run.code).toBe(0);
    expect(evalLines(run).map((l) => l.level)).toEqual(recorded.map((e) => e.level));
  });

  it('emits every recorded event, omitting only the RequestReceived stage', async () => {
    const run = await cli(['policy', 'eval', '--policy', POLICY, '--events', EVENTS]);
    for (const line of evalLines(run)) {
      expect(line).toMatchObject({
        omitStages: ['RequestReceived'],
        omitManagedFields: false,
        emitted: true,
      });
    }
  });

  it('does not emit a RequestReceived event under the recorded policy', async () => {
    const first = eventsText.split('\n')[0] ?? '';
    const received = JSON.stringify({ ...JSON.parse(first), stage: 'RequestReceived' });
    const run = await cli(['policy', 'eval', '--policy', POLICY, '--events', '-'], `${received}\n`);
    expect(run.code).toBe(0);
    expect(evalLines(run)).toEqual([
      {
        auditID: recorded[0]?.auditID,
        stage: 'RequestReceived',
        level: 'RequestResponse',
        omitStages: ['RequestReceived'],
        omitManagedFields: false,
        emitted: false,
      },
    ]);
  });
});

describe('policy eval input', () => {
  async function expectRecordedOutput(run: Run): Promise<void> {
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    const file = await cli(['policy', 'eval', '--policy', POLICY, '--events', EVENTS]);
    expect(run.stdout).toBe(file.stdout);
  }

  it('reads JSON lines from standard input with --events -', async () => {
    await expectRecordedOutput(
      await cli(['policy', 'eval', '--policy', POLICY, '--events', '-'], eventsText),
    );
  });

  it('reads JSON lines from standard input when --events is omitted', async () => {
    await expectRecordedOutput(await cli(['policy', 'eval', '--policy', POLICY], eventsText));
  });

  it('skips blank lines between events', async () => {
    const spaced = eventsText.split('\n').join('\n\n');
    await expectRecordedOutput(await cli(['policy', 'eval', '--policy', POLICY], `\n${spaced}`));
  });

  it('reads each line of a file of whole EventLists, as the webhook batches arrive', async () => {
    const lines = BATCHES.map((file) =>
      JSON.stringify(JSON.parse(readFileSync(join(ROOT, file), 'utf8'))),
    );
    const path = await tempFile('batches.jsonl', `${lines.join('\n')}\n`);
    await expectRecordedOutput(await cli(['policy', 'eval', '--policy', POLICY, '--events', path]));
  });

  it('reads a pretty-printed EventList document from a file', async () => {
    const items = recorded.map((e) => e as unknown);
    const doc = JSON.stringify(
      { kind: 'EventList', apiVersion: 'audit.k8s.io/v1', items },
      null,
      2,
    );
    const path = await tempFile('eventlist.json', doc);
    await expectRecordedOutput(await cli(['policy', 'eval', '--policy', POLICY, '--events', path]));
  });

  it('reads a pretty-printed EventList document from standard input', async () => {
    const items = recorded.map((e) => e as unknown);
    const doc = JSON.stringify(
      { kind: 'EventList', apiVersion: 'audit.k8s.io/v1', items },
      null,
      2,
    );
    await expectRecordedOutput(await cli(['policy', 'eval', '--policy', POLICY], doc));
  });

  it('prints nothing and succeeds for empty input', async () => {
    const run = await cli(['policy', 'eval', '--policy', POLICY], '');
    expect(run).toEqual({ code: 0, stdout: '', stderr: '' });
  });
});

describe('policy eval with a policy that drops events', () => {
  const DROPPING = [
    'apiVersion: audit.k8s.io/v1',
    'kind: Policy',
    'omitStages: ["RequestReceived"]',
    'rules:',
    '- level: None',
    '  resources:',
    '  - group: ""',
    '    resources: ["secrets"]',
    '- level: Metadata',
    '  verbs: ["get", "list"]',
    '  omitStages: ["ResponseComplete"]',
    '- level: Request',
    '  omitManagedFields: true',
    '',
  ].join('\n');

  /** What DROPPING decides, written out independently of the engine. */
  function expected(event: Recorded): EvalLine {
    const base = { auditID: event.auditID, stage: event.stage };
    if (event.objectRef?.resource === 'secrets') {
      return {
        ...base,
        level: 'None',
        omitStages: ['RequestReceived'],
        omitManagedFields: false,
        emitted: false,
      };
    }
    if (event.verb === 'get' || event.verb === 'list') {
      return {
        ...base,
        level: 'Metadata',
        omitStages: ['RequestReceived', 'ResponseComplete'],
        omitManagedFields: false,
        emitted: false,
      };
    }
    // Every remaining recorded event is at Request or RequestResponse, so the rule's Request wins.
    return {
      ...base,
      level: 'Request',
      omitStages: ['RequestReceived'],
      omitManagedFields: true,
      emitted: true,
    };
  }

  it('reports level None and emitted false for the events a None rule drops, and the omitted stages', async () => {
    const policy = await tempFile('dropping.yaml', DROPPING);
    const run = await cli(['policy', 'eval', '--policy', policy, '--events', EVENTS]);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    const lines = evalLines(run);
    expect(lines).toEqual(recorded.map(expected));
    // The fixtures hold all three outcomes, so each branch above is exercised.
    expect(lines.filter((l) => l.level === 'None').length).toBeGreaterThan(0);
    expect(lines.filter((l) => l.level !== 'None' && !l.emitted).length).toBeGreaterThan(0);
    expect(lines.filter((l) => l.emitted).length).toBeGreaterThan(0);
  });

  it('does not emit any event of a stage the policy omits for every rule', async () => {
    const policy = await tempFile(
      'omit-complete.yaml',
      'apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [ResponseComplete]\nrules:\n- level: Metadata\n',
    );
    const run = await cli(['policy', 'eval', '--policy', policy, '--events', EVENTS]);
    expect(run.code).toBe(0);
    const lines = evalLines(run);
    expect(lines).toHaveLength(recorded.length);
    for (const line of lines) {
      expect(line).toMatchObject({
        level: 'Metadata',
        omitStages: ['ResponseComplete'],
        emitted: false,
      });
    }
  });
});

describe('policy eval with bad events', () => {
  it('reports each bad JSON line with file:line and the field path, evaluates the rest, and exits 1', async () => {
    const good = eventsText.split('\n').filter((line) => line !== '');
    const badLevel = JSON.stringify({ ...JSON.parse(good[1] ?? ''), level: 'Everything' });
    const badIP = JSON.stringify({ ...JSON.parse(good[2] ?? ''), sourceIPs: [127001] });
    const lines = [good[0], badLevel, '{"auditID": ', badIP, good[3]];
    const path = await tempFile('mixed.jsonl', `${lines.join('\n')}\n`);
    const run = await cli(['policy', 'eval', '--policy', POLICY, '--events', path]);
    expect(run.code).toBe(1);
    expect(evalLines(run).map((l) => l.auditID)).toEqual([
      recorded[0]?.auditID,
      recorded[3]?.auditID,
    ]);
    const errors = run.stderr.split('\n').filter((line) => line !== '');
    expect(errors).toEqual([
      expect.stringMatching(
        prefixPattern(`error: ${path}:2: level: unsupported value "Everything"`),
      ),
      expect.stringMatching(prefixPattern(`error: ${path}:3: malformed JSON`)),
      expect.stringMatching(prefixPattern(`error: ${path}:4: sourceIPs[0]: expected a string`)),
      'error: 3 invalid events skipped',
    ]);
    expect(run.stderr).not.toContain(STACK_FRAME);
  });

  it('still evaluates every good line when the first line is corrupt', async () => {
    const good = eventsText.split('\n').filter((line) => line !== '');
    const path = await tempFile(
      'truncated.jsonl',
      `{"auditID": "cut-off\n${good.slice(0, 3).join('\n')}\n`,
    );
    const run = await cli(['policy', 'eval', '--policy', POLICY, '--events', path]);
    expect(run.code).toBe(1);
    expect(evalLines(run).map((l) => l.auditID)).toEqual(
      recorded.slice(0, 3).map((e) => e.auditID),
    );
    expect(run.stderr).toMatch(prefixPattern(`error: ${path}:1: malformed JSON`));
  });

  it('names standard input as stdin in the location of a bad line', async () => {
    const line = '{"level":"Metadata","stage":"ResponseComplete"}';
    const run = await cli(['policy', 'eval', '--policy', POLICY], `${line}\n`);
    expect(run.code).toBe(1);
    expect(run.stderr).toContain('error: stdin:1: auditID: Required value');
    expect(run.stderr).toContain('error: 1 invalid event skipped');
  });

  it('names the item of a bad EventList in its field path', async () => {
    const items = recorded.slice(0, 2).map((e, i) => (i === 1 ? { ...e, stage: 'Done' } : e));
    const doc = JSON.stringify({ kind: 'EventList', apiVersion: 'audit.k8s.io/v1', items });
    const run = await cli(['policy', 'eval', '--policy', POLICY], `${doc}\n`);
    expect(run.code).toBe(1);
    expect(run.stderr).toContain('error: stdin:1: items[1].stage: unsupported value "Done"');
  });

  it('fails with a clear message and no stack trace when the events file does not exist', async () => {
    const run = await cli([
      'policy',
      'eval',
      '--policy',
      POLICY,
      '--events',
      'no/such/events.jsonl',
    ]);
    expect(run.code).toBe(1);
    expect(run.stdout).toBe('');
    expect(run.stderr).toBe('error: cannot read events no/such/events.jsonl: no such file\n');
    expect(run.stderr).not.toContain(STACK_FRAME);
  });

  it('fails with a clear message and no stack trace when the events path is a directory', async () => {
    const run = await cli(['policy', 'eval', '--policy', POLICY, '--events', FIXTURES]);
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(prefixPattern(`error: cannot read events ${FIXTURES}: `));
    expect(run.stderr).not.toContain('unexpected failure');
    expect(run.stderr).not.toContain(STACK_FRAME);
  });
});

describe('policy eval with a bad policy', () => {
  const evalWith = (policy: string) =>
    cli(['policy', 'eval', '--policy', policy, '--events', EVENTS]);

  it('fails with a clear message when the policy file does not exist', async () => {
    const run = await evalWith('no/such/policy.yaml');
    expect(run.code).toBe(1);
    expect(run.stdout).toBe('');
    expect(run.stderr).toBe('error: cannot read policy no/such/policy.yaml: no such file\n');
    expect(run.stderr).not.toContain(STACK_FRAME);
  });

  it('fails with a clear message when the policy is malformed YAML', async () => {
    const policy = await tempFile('malformed.yaml', 'apiVersion: audit.k8s.io/v1\nrules: [\n');
    const run = await evalWith(policy);
    expect(run.code).toBe(1);
    expect(run.stdout).toBe('');
    expect(run.stderr).toContain(`error: ${policy}: invalid audit policy:`);
    expect(run.stderr).toContain('malformed YAML/JSON');
    expect(run.stderr).not.toContain(STACK_FRAME);
  });

  it('names the field path of every invalid rule field', async () => {
    const policy = await tempFile(
      'invalid.yaml',
      [
        'apiVersion: audit.k8s.io/v1',
        'kind: Policy',
        'rules:',
        '- level: Everything',
        '- level: Metadata',
        '  resources:',
        '  - group: rbac.authorization.k8s.io/v1',
        '- level: Metadata',
        '  nonResourceURLs: ["logs"]',
        '',
      ].join('\n'),
    );
    const run = await evalWith(policy);
    expect(run.code).toBe(1);
    expect(run.stdout).toBe('');
    expect(run.stderr).toContain('rules[0].level: Unsupported value: "Everything"');
    expect(run.stderr).toContain(
      'rules[1].resources[0].group: Invalid value: "rbac.authorization.k8s.io/v1"',
    );
    expect(run.stderr).toContain('rules[2].nonResourceURLs[0]: Invalid value: "logs"');
    expect(run.stderr).not.toContain(STACK_FRAME);
  });

  it('refuses a file holding two policies', async () => {
    const one = 'apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n';
    const policy = await tempFile('two.yaml', `${one}---\n${one}`);
    const run = await evalWith(policy);
    expect(run.code).toBe(1);
    expect(run.stdout).toBe('');
    expect(run.stderr).toContain('expected one Policy, found 2');
  });

  it('prints warnings for unknown policy fields on stderr and still evaluates', async () => {
    const policy = await tempFile(
      'typo.yaml',
      'apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n  verb: [get]\n',
    );
    const run = await evalWith(policy);
    expect(run.code).toBe(0);
    expect(run.stderr).toBe(
      `warning: ${policy}: rules[0].verb: unknown field, ignored (as the kube-apiserver ignores it)\n`,
    );
    expect(evalLines(run)).toHaveLength(recorded.length);
  });
});

describe('policy lint', () => {
  const VALID = 'apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n';
  const INVALID = [
    'apiVersion: audit.k8s.io/v1',
    'kind: Policy',
    'rules:',
    '- level: Everything',
    '- level: Metadata',
    '  resources:',
    '  - group: rbac.authorization.k8s.io/v1',
    '  nonResourceURLs: ["logs"]',
    '',
  ].join('\n');
  const UNKNOWN_FIELD =
    'apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n  resource:\n  - group: ""\n';

  it('prints ok for a valid policy and exits 0', async () => {
    const run = await cli(['policy', 'lint', POLICY]);
    expect(run).toEqual({ code: 0, stdout: `${POLICY}: ok (1 policy, 5 rules)\n`, stderr: '' });
  });

  it('prints one line per error, each prefixed with the file name and naming the field path', async () => {
    const file = await tempFile('lint-invalid.yaml', INVALID);
    const run = await cli(['policy', 'lint', file]);
    expect(run.code).toBe(1);
    const lines = outputLines(run);
    expect(lines).toEqual([
      expect.stringMatching(/rules\[0\]\.level: Unsupported value: "Everything"/),
      expect.stringMatching(/rules\[1\]\.nonResourceURLs\[0\]: Invalid value: "logs"/),
      expect.stringMatching(/rules\[1\]\.resources\[0\]\.group: Invalid value/),
      expect.stringMatching(
        /rules\[1\]\.nonResourceURLs: Invalid value: \["logs"\]: rules cannot apply to both/,
      ),
    ]);
    for (const line of lines) expect(line.startsWith(`${file}: `)).toBe(true);
    expect(run.stderr).not.toContain(STACK_FRAME);
  });

  it('reports a malformed file as one prefixed line', async () => {
    const file = await tempFile('lint-malformed.yaml', 'rules: [\n');
    const run = await cli(['policy', 'lint', file]);
    expect(run.code).toBe(1);
    expect(outputLines(run)).toEqual([
      expect.stringMatching(prefixPattern(`${file}: malformed YAML/JSON: `)),
    ]);
  });

  it('lints several files at once, in order, and fails when any fails', async () => {
    const valid = await tempFile('lint-valid.yaml', VALID);
    const invalid = await tempFile('lint-invalid-2.yaml', INVALID);
    const run = await cli(['policy', 'lint', valid, invalid, POLICY]);
    expect(run.code).toBe(1);
    const lines = outputLines(run);
    expect(lines[0]).toBe(`${valid}: ok (1 policy, 1 rule)`);
    expect(lines.at(-1)).toBe(`${POLICY}: ok (1 policy, 5 rules)`);
    expect(lines.slice(1, -1)).toHaveLength(4);
    for (const line of lines.slice(1, -1)) expect(line.startsWith(`${invalid}: `)).toBe(true);
  });

  it('succeeds for several valid files, counting the policies in each', async () => {
    const valid = await tempFile('lint-valid-2.yaml', VALID);
    const two = await tempFile('lint-two.yaml', `${VALID}---\n${VALID}`);
    const run = await cli(['policy', 'lint', valid, two]);
    expect(run).toEqual({
      code: 0,
      stdout: `${valid}: ok (1 policy, 1 rule)\n${two}: ok (2 policies, 2 rules)\n`,
      stderr: '',
    });
  });

  it('warns about unknown fields, naming the field path, and still exits 0', async () => {
    const file = await tempFile('lint-unknown.yaml', UNKNOWN_FIELD);
    const run = await cli(['policy', 'lint', file]);
    expect(run.code).toBe(0);
    expect(outputLines(run)).toEqual([
      `${file}: warning: rules[0].resource: unknown field, ignored (as the kube-apiserver ignores it)`,
      `${file}: ok (1 policy, 1 rule)`,
    ]);
  });

  it('fails on warnings with --strict', async () => {
    const file = await tempFile('lint-strict.yaml', UNKNOWN_FIELD);
    const run = await cli(['policy', 'lint', '--strict', file]);
    expect(run.code).toBe(1);
    expect(outputLines(run)).toEqual([
      `${file}: warning: rules[0].resource: unknown field, ignored (as the kube-apiserver ignores it)`,
    ]);
  });

  it('passes a file without warnings with --strict', async () => {
    const run = await cli(['policy', 'lint', '--strict', POLICY]);
    expect(run.code).toBe(0);
    expect(run.stdout).toBe(`${POLICY}: ok (1 policy, 5 rules)\n`);
  });

  it('fails with a clear message when a file does not exist', async () => {
    const run = await cli(['policy', 'lint', 'no/such/policy.yaml']);
    expect(run.code).toBe(1);
    expect(run.stderr).toBe('error: cannot read policy no/such/policy.yaml: no such file\n');
  });

  it('goes on to the next file after one that cannot be read', async () => {
    const run = await cli(['policy', 'lint', 'no/such/policy.yaml', POLICY]);
    expect(run.code).toBe(1);
    expect(run.stderr).toBe('error: cannot read policy no/such/policy.yaml: no such file\n');
    expect(run.stdout).toBe(`${POLICY}: ok (1 policy, 5 rules)\n`);
  });

  it('is a usage error without any file', async () => {
    const run = await cli(['policy', 'lint']);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain("missing required argument 'files'");
  });
});

describe('command line usage', () => {
  it('is a usage error to run policy eval without --policy', async () => {
    const run = await cli(['policy', 'eval', '--events', EVENTS]);
    expect(run.code).toBe(2);
    expect(run.stdout).toBe('');
    expect(run.stderr).toContain("error: required option '--policy <file>' not specified");
    expect(run.stderr).toContain('--help');
  });

  it('is a usage error to name an unknown command', async () => {
    const run = await cli(['frobnicate']);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain("error: unknown command 'frobnicate'");
    expect(run.stderr).toContain('--help');
  });

  it('is a usage error to pass an unknown option', async () => {
    const run = await cli(['policy', 'eval', '--policy', POLICY, '--event', EVENTS]);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain("error: unknown option '--event'");
  });

  it('prints usage with --help and exits 0', async () => {
    const run = await cli(['policy', 'eval', '--help']);
    expect(run.code).toBe(0);
    expect(run.stdout).toContain('Usage: kube-audit-operator policy eval [options]');
    expect(run.stdout).toContain('--policy <file>');
  });

  it('prints the package.json version with --version', async () => {
    const { version } = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
      version: string;
    };
    for (const flag of ['--version', '-V']) {
      const run = await cli([flag]);
      expect(run).toEqual({ code: 0, stdout: `${version}\n`, stderr: '' });
    }
  });
});
