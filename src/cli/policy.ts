/**
 * `policy eval` and `policy lint`: test an audit policy before rolling it out.
 */
import type { Readable, Writable } from 'node:stream';
import type { Command } from 'commander';
import {
  compilePolicy,
  decideLevel,
  type LoadedPolicy,
  loadPolicies,
  loadPolicy,
  PolicyLoadError,
} from '../policy/index.ts';
import { CliError } from './errors.ts';
import { readEvents, readTextFile } from './input.ts';

/** The streams a command reads and writes. */
export interface CommandIO {
  readonly stdin: Readable;
  readonly stdout: Writable;
  readonly stderr: Writable;
}

/** Adds the `policy` command group to the program. */
export function registerPolicyCommands(program: Command, io: CommandIO): void {
  const policy = program.command('policy').description('test and check audit.k8s.io/v1 policies');

  policy
    .command('eval')
    .description(
      'decide, for each audit event, what the policy keeps; prints one JSON line per event, in input order',
    )
    .requiredOption('--policy <file>', 'audit policy file (YAML or JSON)')
    .option(
      '--events <file>',
      'audit events: JSON lines or an EventList; - for standard input',
      '-',
    )
    .action(async (opts: { policy: string; events: string }) => {
      await evalCommand(opts.policy, opts.events, io);
    });

  policy
    .command('lint')
    .description('validate audit policy files; prints one line per error')
    .argument('<files...>', 'audit policy files (YAML or JSON)')
    .option('--strict', 'fail on warnings too (unknown fields, deprecated apiVersion)', false)
    .action(async (files: string[], opts: { strict: boolean }) => {
      await lintCommand(files, opts.strict, io);
    });
}

/** One line of `policy eval` output; key order is part of the contract. */
interface EvalLine {
  auditID: string;
  stage: string;
  level: string;
  omitStages: readonly string[];
  omitManagedFields: boolean;
  emitted: boolean;
}

async function evalCommand(policyPath: string, eventsPath: string, io: CommandIO): Promise<void> {
  const loaded = await readPolicy(policyPath);
  for (const warning of loaded.warnings) io.stderr.write(`warning: ${policyPath}: ${warning}\n`);
  const compiled = compilePolicy(loaded.policy);
  let bad = 0;
  for await (const record of readEvents(eventsPath, io.stdin)) {
    if (!record.ok) {
      bad++;
      io.stderr.write(`error: ${record.where}: ${record.message}\n`);
      continue;
    }
    const { event } = record;
    const decision = decideLevel(compiled, event);
    const line: EvalLine = {
      auditID: event.auditID,
      stage: event.stage,
      level: decision.level,
      omitStages: decision.omitStages,
      omitManagedFields: decision.omitManagedFields,
      emitted: decision.emitted,
    };
    if (!io.stdout.write(`${JSON.stringify(line)}\n`)) {
      await new Promise((resolve) => io.stdout.once('drain', resolve));
    }
  }
  if (bad > 0) throw new CliError(`${bad} invalid event${bad === 1 ? '' : 's'} skipped`);
}

async function lintCommand(
  files: readonly string[],
  strict: boolean,
  io: CommandIO,
): Promise<void> {
  let failed = 0;
  for (const file of files) {
    let text: string;
    try {
      text = await readTextFile(file, 'policy');
    } catch (err) {
      if (!(err instanceof CliError)) throw err;
      failed++;
      io.stderr.write(`error: ${err.message}\n`);
      continue;
    }
    try {
      const loaded = loadPolicies(text, file);
      const warnings = loaded.flatMap((l) => l.warnings);
      for (const warning of warnings) io.stdout.write(`${file}: warning: ${warning}\n`);
      if (strict && warnings.length > 0) {
        failed++;
        continue;
      }
      const rules = loaded.reduce((n, l) => n + l.policy.rules.length, 0);
      const policies = `${loaded.length} ${loaded.length === 1 ? 'policy' : 'policies'}`;
      io.stdout.write(`${file}: ok (${policies}, ${rules} ${rules === 1 ? 'rule' : 'rules'})\n`);
    } catch (err) {
      if (!(err instanceof PolicyLoadError)) throw err;
      failed++;
      for (const problem of err.problems) io.stdout.write(`${file}: ${problem}\n`);
    }
  }
  if (failed > 0) throw new CliError('', 1);
}

async function readPolicy(path: string): Promise<LoadedPolicy> {
  const text = await readTextFile(path, 'policy');
  try {
    return loadPolicy(text, path);
  } catch (err) {
    if (err instanceof PolicyLoadError) throw new CliError(err.message, 1, { cause: err });
    throw err;
  }
}
