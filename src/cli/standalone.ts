/**
 * `standalone -f <file|dir>`: the data path without a cluster, sinks from manifest files.
 */
import { type Command, Option } from 'commander';
import {
  type Settings,
  SettingsError,
  type SettingsInput,
  validateSettings,
} from '../config/settings.ts';
import { startStandalone } from '../standalone/run.ts';
import { createLogger, type Logger } from '../telemetry/logger.ts';
import { CliError } from './errors.ts';

/** Flags shared by the commands that run receivers (`standalone`, later `run`). */
export function addReceiverOptions(command: Command): Command {
  const env = (flag: string, name: string, description: string) =>
    new Option(flag, description).env(`KUBE_AUDIT_${name}`);
  return command
    .addOption(env('--listen <host:port>', 'LISTEN', 'receiver address (default 127.0.0.1:8443)'))
    .addOption(env('--insecure', 'INSECURE', 'plain HTTP without authentication, loopback only'))
    .addOption(env('--tls-cert-file <file>', 'TLS_CERT_FILE', 'serving certificate (PEM)'))
    .addOption(env('--tls-key-file <file>', 'TLS_KEY_FILE', 'serving key (PEM)'))
    .addOption(
      env('--client-ca-file <file>', 'CLIENT_CA_FILE', 'CA of accepted client certificates'),
    )
    .addOption(
      env('--token-file <file...>', 'TOKEN_FILES', 'files of accepted bearer tokens, one per line'),
    )
    .addOption(
      env(
        '--data-dir <dir>',
        'DATA_DIR',
        'spool and line-protocol files (default ./kube-audit-data; the image: /var/lib/kube-audit)',
      ),
    )
    .addOption(
      env('--spool-max-bytes <n>', 'SPOOL_MAX_BYTES', 'cap of each sink spool (default 1 GiB)'),
    )
    .addOption(
      env(
        '--dead-letter-max-bytes <n>',
        'DEAD_LETTER_MAX_BYTES',
        "cap of each sink's dead-letter file (default 64 MiB)",
      ),
    )
    .addOption(
      env('--namespace <ns>', 'NAMESPACE', "the operator's namespace (default kube-audit)"),
    )
    .addOption(
      env(
        '--cluster-wide-namespaces <list>',
        'CLUSTER_WIDE_NAMESPACES',
        'pipelines here see every namespace (default: --namespace)',
      ),
    )
    .addOption(
      env(
        '--allow-secret-payloads',
        'ALLOW_SECRET_PAYLOADS',
        'keep bodies of Secret and token requests',
      ),
    )
    .addOption(
      env(
        '--shutdown-grace-seconds <n>',
        'SHUTDOWN_GRACE_SECONDS',
        'time the shutdown on SIGTERM may take, drain included (default 25)',
      ),
    )
    .addOption(
      env(
        '--shutdown-delay-seconds <n>',
        'SHUTDOWN_DELAY_SECONDS',
        'first part of that shutdown in which listeners still accept, readiness off (default 0)',
      ),
    )
    .addOption(
      env(
        '--max-requests-per-connection <n>',
        'MAX_REQUESTS_PER_CONNECTION',
        'close a connection after this many requests, 0: never (default 100)',
      ),
    )
    .addOption(
      env(
        '--max-connection-age-seconds <n>',
        'MAX_CONNECTION_AGE_SECONDS',
        'close a connection at its first answer after this age ±10 %, 0: never (default 60)',
      ),
    )
    .addOption(
      env(
        '--influxdb-max-requests-per-server <n>',
        'INFLUXDB_MAX_REQUESTS_PER_SERVER',
        'requests in flight to one InfluxDB server, shared by its sinks (default 128)',
      ),
    )
    .addOption(env('--log-level <level>', 'LOG_LEVEL', 'fatal|error|warn|info|debug|trace|silent'));
}

/** Commander's parsed receiver flags. */
export interface ReceiverFlags {
  listen?: string;
  insecure?: boolean | string;
  tlsCertFile?: string;
  tlsKeyFile?: string;
  clientCaFile?: string;
  tokenFile?: string[] | string;
  dataDir?: string;
  spoolMaxBytes?: string;
  deadLetterMaxBytes?: string;
  namespace?: string;
  clusterWideNamespaces?: string;
  allowSecretPayloads?: boolean | string;
  shutdownGraceSeconds?: string;
  shutdownDelaySeconds?: string;
  maxRequestsPerConnection?: string;
  maxConnectionAgeSeconds?: string;
  influxdbMaxRequestsPerServer?: string;
  logLevel?: string;
}

/** A setter of `input` that leaves out flags not given (undefined), so defaults apply. */
export function definedSetter(
  input: SettingsInput,
): (key: keyof SettingsInput, value: unknown) => void {
  return (key, value) => {
    if (value !== undefined) input[key] = value;
  };
}

/** Maps flags to the settings schema; validation happens there, once. */
export function settingsFromFlags(flags: ReceiverFlags): SettingsInput {
  const input: SettingsInput = {};
  const set = definedSetter(input);
  set('listen', flags.listen);
  set('insecure', flags.insecure);
  set('tlsCertFile', flags.tlsCertFile);
  set('tlsKeyFile', flags.tlsKeyFile);
  set('clientCAFile', flags.clientCaFile);
  set(
    'tokenFiles',
    typeof flags.tokenFile === 'string' ? flags.tokenFile.split(',') : flags.tokenFile,
  );
  set('dataDir', flags.dataDir);
  set('spoolMaxBytes', flags.spoolMaxBytes);
  set('deadLetterMaxBytes', flags.deadLetterMaxBytes);
  set('namespace', flags.namespace);
  set('clusterWideNamespaces', flags.clusterWideNamespaces);
  set('allowSecretPayloads', flags.allowSecretPayloads);
  set('shutdownGraceSeconds', flags.shutdownGraceSeconds);
  set('shutdownDelaySeconds', flags.shutdownDelaySeconds);
  set('maxRequestsPerConnection', flags.maxRequestsPerConnection);
  set('maxConnectionAgeSeconds', flags.maxConnectionAgeSeconds);
  set('influxdbMaxRequestsPerServer', flags.influxdbMaxRequestsPerServer);
  set('logLevel', flags.logLevel);
  return input;
}

/** Validates settings once; invalid ones are a usage error (exit 2) naming every bad field. */
export function settingsOrUsageError(
  input: SettingsInput,
  options?: { readonly receiver: boolean },
): Settings {
  try {
    return validateSettings(input, options);
  } catch (err) {
    if (err instanceof SettingsError) throw new CliError(err.message, 2, { cause: err });
    throw err;
  }
}

/** Adds the `standalone` command. */
export function registerStandaloneCommand(program: Command): void {
  addReceiverOptions(
    program
      .command('standalone')
      .description(
        'run receivers and sinks from manifest files (AuditSink, AuditPipeline, Secret), without a cluster',
      )
      .requiredOption('-f, --filename <file|dir>', 'manifests, reloaded when they change'),
  ).action(async (flags: ReceiverFlags & { filename: string }) => {
    const settings = settingsOrUsageError(settingsFromFlags(flags));
    const log = createLogger(settings.logLevel);
    const running = await startStandalone(settings, flags.filename, log).catch((err: unknown) => {
      throw new CliError(`cannot start: ${(err as Error).message}`, 1, { cause: err });
    });
    await untilSignal(() => running.shutdown(), log, settings.shutdownGraceSeconds);
  });
}

/**
 * Resolves after SIGTERM or SIGINT, once `shutdown` has finished (or failed, which is logged).
 * The process exits at the end of the grace period at the latest, whatever still runs then: a
 * step that overran its own deadline, or a connection that keeps the event loop alive. What was
 * not delivered is in the spool, so the exit status is 0.
 */
export async function untilSignal(
  shutdown: () => Promise<void>,
  log: Logger,
  graceSeconds: number,
): Promise<void> {
  await new Promise<void>((resolve) => {
    const stop = (signal: NodeJS.Signals) => {
      log.info({ signal, graceSeconds }, 'shutting down');
      process.off('SIGTERM', stop);
      process.off('SIGINT', stop);
      let finished = false;
      // Unreferenced: a process with nothing left to do exits at once, not at the deadline.
      setTimeout(() => {
        if (!finished) {
          log.warn({ graceSeconds }, 'grace period over before shutdown finished; exiting');
        }
        process.exit(process.exitCode ?? 0);
      }, graceSeconds * 1000).unref();
      void shutdown()
        .catch((err: unknown) => {
          log.error({ err }, 'shutdown failed');
        })
        .finally(() => {
          finished = true;
          resolve();
        });
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  });
}
