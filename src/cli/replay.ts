/**
 * `replay --events <audit.log> -f <file|dir>`: an apiserver audit log through the sinks of
 * manifest files, with a progress bar on a terminal.
 */
import { type Command, Option } from 'commander';
import { type ReplayProgress, replayAuditLog } from '../standalone/replay.ts';
import { createLogger } from '../telemetry/logger.ts';
import { CliError } from './errors.ts';
import type { CommandIO } from './policy.ts';
import { settingsFromFlags, settingsOrUsageError } from './standalone.ts';

/** Adds the `replay` command. */
export function registerReplayCommand(program: Command, io: CommandIO): void {
  program
    .command('replay')
    .description('run an apiserver audit log (JSON lines) through the sinks of manifest files')
    .requiredOption('--events <file>', 'audit log written by --audit-log-path (JSON lines)')
    .requiredOption('-f, --filename <file|dir>', 'AuditSink, AuditPipeline and Secret manifests')
    .addOption(
      new Option(
        '--data-dir <dir>',
        'where sinks without a destination write line protocol (default ./kube-audit-data)',
      ).env('KUBE_AUDIT_DATA_DIR'),
    )
    .option('--namespace <ns>', "the operator's namespace (default kube-audit)")
    .option('--cluster-wide-namespaces <list>', 'pipelines here see every namespace')
    .option('--allow-secret-payloads', 'keep bodies of Secret and token requests')
    .option('--log-level <level>', 'fatal|error|warn|info|debug|trace|silent', 'warn')
    .action(
      async (flags: {
        events: string;
        filename: string;
        dataDir?: string;
        namespace?: string;
        clusterWideNamespaces?: string;
        allowSecretPayloads?: boolean;
        logLevel?: string;
      }) => {
        const settings = settingsOrUsageError(settingsFromFlags(flags), { receiver: false });
        const bar = progressBar(io);
        const summary = await replayAuditLog(
          settings,
          flags.events,
          flags.filename,
          createLogger(settings.logLevel),
          bar.update,
        ).catch((err: unknown) => {
          const code = (err as NodeJS.ErrnoException).code;
          throw new CliError(
            code === 'ENOENT'
              ? `cannot read ${(err as NodeJS.ErrnoException).path ?? flags.events}: no such file`
              : `replay failed: ${(err as Error).message}`,
            1,
            { cause: err },
          );
        });
        bar.done();
        for (const line of summary.invalid) io.stderr.write(`error: ${line}\n`);
        io.stdout.write(`replayed ${summary.events} events\n`);
        for (const { key, status } of summary.sinks) {
          const d = status.dropped;
          io.stdout.write(
            `${key}: kept ${status.received - d.policy - d.namespace - d.overflow}, dropped by policy ${d.policy}, by namespace ${d.namespace}, written ${status.written}\n`,
          );
        }
        if (summary.undelivered > 0) {
          throw new CliError(
            `${summary.undelivered} events could not be delivered: see the errors above`,
          );
        }
        if (summary.invalid.length > 0) {
          throw new CliError(`${summary.invalid.length} invalid lines skipped`);
        }
      },
    );
}

/** A one-line progress bar on a terminal's standard error; silent otherwise. */
function progressBar(io: CommandIO): { update: (p: ReplayProgress) => void; done: () => void } {
  const tty = 'isTTY' in io.stderr && io.stderr.isTTY === true;
  const started = Date.now();
  let last = 0;
  let shown = false;
  return {
    update(p) {
      const now = Date.now();
      if (!tty || (now - last < 100 && p.bytesRead < p.totalBytes)) return;
      last = now;
      shown = true;
      const fraction = p.totalBytes === 0 ? 1 : Math.min(1, p.bytesRead / p.totalBytes);
      const width = 30;
      const filled = Math.round(fraction * width);
      const rate = Math.round(p.events / Math.max(0.001, (now - started) / 1000));
      io.stderr.write(
        `\r[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${(fraction * 100).toFixed(0).padStart(3)}%  ${p.events} events  ${rate}/s`,
      );
    },
    done() {
      if (shown) io.stderr.write('\n');
    },
  };
}
