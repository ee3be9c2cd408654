/**
 * `run`: the operator, in a cluster (service account) or against a cluster with `--kubeconfig`.
 */
import { type Command, Option } from 'commander';
import type { SettingsInput } from '../config/settings.ts';
import { createLogger } from '../telemetry/logger.ts';
import { CliError } from './errors.ts';
import {
  addReceiverOptions,
  type ReceiverFlags,
  definedSetter,
  settingsFromFlags,
  settingsOrUsageError,
  untilSignal,
} from './standalone.ts';

/** The flags only `run` has. */
interface OperatorFlags extends ReceiverFlags {
  kubeconfig?: string;
  advertiseUrl?: string;
  statusIntervalSeconds?: string;
  leaseName?: string;
  nativeAuditSinks?: string;
  nativeKeyFile?: string;
  metricsAuthAllowTtlSeconds?: string;
  metricsAuthDenyTtlSeconds?: string;
}

/** Adds the `run` command. */
export function registerRunCommand(program: Command): void {
  const env = (flag: string, name: string, description: string) =>
    new Option(flag, description).env(name);
  addReceiverOptions(
    program
      .command('run')
      .description('run the operator: AuditSink and AuditPipeline resources of a cluster')
      .addOption(
        env(
          '--kubeconfig <file>',
          'KUBECONFIG',
          'kubeconfig file (default: in-cluster service account)',
        ),
      )
      .addOption(
        env(
          '--advertise-url <url>',
          'KUBE_AUDIT_ADVERTISE_URL',
          "receivers' base URL as the apiserver reaches them (status endpoint, native AuditSinks)",
        ),
      )
      .addOption(
        env(
          '--status-interval-seconds <n>',
          'KUBE_AUDIT_STATUS_INTERVAL_SECONDS',
          'how often status is written, at most (default 5)',
        ),
      )
      .addOption(
        env(
          '--lease-name <name>',
          'KUBE_AUDIT_LEASE_NAME',
          'leader election Lease (default kube-audit-operator)',
        ),
      )
      .addOption(
        env(
          '--native-audit-sinks <mode>',
          'KUBE_AUDIT_NATIVE_AUDIT_SINKS',
          'auto: register native AuditSinks where auditregistration is served; off',
        ),
      )
      .addOption(
        env(
          '--native-key-file <file>',
          'KUBE_AUDIT_NATIVE_KEY_FILE',
          'secret key signing native AuditSink endpoints',
        ),
      )
      .addOption(
        env(
          '--metrics-auth-allow-ttl-seconds <n>',
          'KUBE_AUDIT_METRICS_AUTH_ALLOW_TTL_SECONDS',
          'how long an allowed /metrics token is trusted before it is reviewed again (default 60)',
        ),
      )
      .addOption(
        env(
          '--metrics-auth-deny-ttl-seconds <n>',
          'KUBE_AUDIT_METRICS_AUTH_DENY_TTL_SECONDS',
          'how long a refused /metrics token stays refused (default 10)',
        ),
      ),
  ).action(async (flags: OperatorFlags) => {
    const settings = settingsOrUsageError(operatorSettingsFromFlags(flags));
    const log = createLogger(settings.logLevel);
    // Until the operator is ready nothing has been acknowledged (readiness is off, the receiver
    // answers 503), so a signal during start-up, e.g. while the apiserver is unreachable, may end
    // the process at once.
    const early = (signal: NodeJS.Signals) => {
      log.info({ signal }, 'stopped before ready');
      process.exit(0);
    };
    process.once('SIGTERM', early);
    process.once('SIGINT', early);
    // Loaded here, not at the top: the Kubernetes client needs Node.js 22 or later, and the other
    // commands must not pay for it (or fail on an older Node.js).
    if (Number(process.versions.node.split('.')[0]) < 22) {
      throw new CliError(`run needs Node.js 22 or later; this is ${process.version}`, 1);
    }
    const { startOperator } = await import('../operator/run.ts');
    const running = await startOperator(settings, log)
      .catch((err: unknown) => {
        throw new CliError(`cannot start: ${(err as Error).message}`, 1, { cause: err });
      })
      .finally(() => {
        process.off('SIGTERM', early);
        process.off('SIGINT', early);
      });
    await untilSignal(() => running.shutdown(), log, settings.shutdownGraceSeconds);
  });
}

function operatorSettingsFromFlags(flags: OperatorFlags): SettingsInput {
  const input = settingsFromFlags(flags);
  const set = definedSetter(input);
  set('kubeconfig', flags.kubeconfig);
  set('advertiseUrl', flags.advertiseUrl);
  set('statusIntervalSeconds', flags.statusIntervalSeconds);
  set('leaseName', flags.leaseName);
  set('nativeAuditSinks', flags.nativeAuditSinks);
  set('nativeKeyFile', flags.nativeKeyFile);
  set('metricsAuthAllowTtlSeconds', flags.metricsAuthAllowTtlSeconds);
  set('metricsAuthDenyTtlSeconds', flags.metricsAuthDenyTtlSeconds);
  return input;
}
