#!/usr/bin/env node
/**
 * Composition root of the `kube-audit-operator` command: the process's streams in, an exit code out.
 */
import { run } from './cli/program.ts';

// A reader that stops early (`| head`) is not an error of ours.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw err;
});

process.exitCode = await run(process.argv.slice(2), {
  stdin: process.stdin,
  stdout: process.stdout,
  stderr: process.stderr,
});
