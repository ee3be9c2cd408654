/**
 * The `kube-audit-operator` command: parses the command line and dispatches to one command.
 */
import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { registerApiserverConfigCommand } from './apiserver-config.ts';
import { registerDeadLetterCommands } from './dead-letter.ts';
import { CliError } from './errors.ts';
import { type CommandIO, registerPolicyCommands } from './policy.ts';
import { registerReplayCommand } from './replay.ts';
import { registerRunCommand } from './run.ts';
import { registerStandaloneCommand } from './standalone.ts';

/** Builds the command-line program around the given streams. */
export function buildProgram(io: CommandIO): Command {
  const program = new Command('kube-audit-operator')
    .description('Dynamic Kubernetes audit sinks with kube-apiserver policy semantics')
    .version(packageVersion(), '-V, --version')
    .showHelpAfterError('(run with --help for usage)')
    .configureOutput({
      writeOut: (s) => io.stdout.write(s),
      writeErr: (s) => io.stderr.write(s),
    })
    .exitOverride();
  registerPolicyCommands(program, io);
  registerRunCommand(program);
  registerApiserverConfigCommand(program, io);
  registerStandaloneCommand(program);
  registerReplayCommand(program, io);
  registerDeadLetterCommands(program, io);
  for (const command of program.commands) command.exitOverride();
  return program;
}

/** Runs the program and returns the process exit code. */
export async function run(argv: readonly string[], io: CommandIO): Promise<number> {
  const program = buildProgram(io);
  try {
    await program.parseAsync([...argv], { from: 'user' });
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      // Commander has already printed help or the usage error.
      return err.exitCode === 0 ? 0 : 2;
    }
    if (err instanceof CliError) {
      if (err.message !== '') io.stderr.write(`error: ${err.message}\n`);
      return err.exitCode;
    }
    io.stderr.write(`error: unexpected failure: ${(err as Error).stack ?? String(err)}\n`);
    return 70; // EX_SOFTWARE: a bug, not bad input.
  }
}

function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
    version: string;
  };
  return pkg.version;
}
