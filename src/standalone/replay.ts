/**
 * `replay`: an apiserver audit log (`--audit-log-path`, JSON lines) through the sinks declared in
 * manifest files, as if the apiserver had posted it: to test sinks and policies on real history,
 * or to backfill a new sink.
 */
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { Registry } from 'prom-client';
import { jsonLines } from '../audit/lines.ts';
import { AuditParseError, DEFAULT_PARSE_LIMITS, parseAuditPayload } from '../audit/parse.ts';
import type { AuditEvent } from '../audit/types.ts';
import type { Settings } from '../config/settings.ts';
import type { SinkStatusSnapshot } from '../sinks/status.ts';
import type { Logger } from '../telemetry/logger.ts';
import { loadResources } from './resources.ts';
import { createRegistry } from '../runtime/dataplane.ts';

/** How far a replay has got. */
export interface ReplayProgress {
  readonly bytesRead: number;
  readonly totalBytes: number;
  readonly events: number;
}

/** What a replay did, per sink. */
export interface ReplaySummary {
  readonly events: number;
  /** Lines that were not valid audit events, with where and why. */
  readonly invalid: readonly string[];
  readonly sinks: readonly { readonly key: string; readonly status: SinkStatusSnapshot }[];
  /** Events still queued when the drain deadline passed (a destination kept failing). */
  readonly undelivered: number;
}

/** Events per ingest: the apiserver's default webhook batch size. */
const BATCH = 400;
/** Reading pauses while this many events wait for delivery: bounded memory for any file size. */
const MAX_QUEUED = 20_000;

/** Replays `eventsPath` through the sinks of `resourcesPath`. */
export async function replayAuditLog(
  settings: Settings,
  eventsPath: string,
  resourcesPath: string,
  log: Logger,
  progress: (p: ReplayProgress) => void,
): Promise<ReplaySummary> {
  // Before anything starts: a missing log fails fast.
  const totalBytes = (await stat(eventsPath)).size;
  const loaded = await loadResources(
    resourcesPath,
    { clusterWideNamespaces: settings.clusterWideNamespaces, requireDestination: false },
    settings.namespace,
  );
  for (const problem of loaded.problems) log.error({ problem }, 'manifest rejected');
  for (const warning of loaded.warnings) log.warn({ warning }, 'manifest accepted with a warning');
  const registry = createRegistry(settings, () => loaded.secrets, new Registry(), log, {
    durable: false,
    embeddedDestination: true,
  });
  await registry.apply(loaded.sinks);

  const stream = createReadStream(eventsPath, { encoding: 'utf8' });
  const invalid: string[] = [];
  let events = 0;
  let lineNo = 0;
  let batch: AuditEvent[] = [];
  const queued = () => [...registry.queueDepths().values()].reduce((a, b) => a + b, 0);
  const flush = async () => {
    if (batch.length === 0) return;
    await registry.ingest(batch, { kind: 'all' });
    events += batch.length;
    batch = [];
    progress({ bytesRead: stream.bytesRead, totalBytes, events });
    // Wait for room, but not for ever: a destination that stays down stops the replay.
    let waited = 0;
    let before = queued();
    while (queued() > MAX_QUEUED) {
      await delay(20);
      const now = queued();
      waited = now < before ? 0 : waited + 20;
      before = now;
      if (waited > settings.shutdownGraceSeconds * 1000) throw new ReplayStalled(now);
    }
  };
  try {
    for await (const line of jsonLines(stream)) {
      lineNo++;
      if (line.trim() === '') continue;
      try {
        batch.push(
          ...parseAuditPayload(line, DEFAULT_PARSE_LIMITS, { allowBareEvent: true }).events,
        );
      } catch (err) {
        if (!(err instanceof AuditParseError)) throw err;
        invalid.push(`${eventsPath}:${lineNo}: ${err.message}`);
      }
      if (batch.length >= BATCH) await flush();
    }
    await flush();
    progress({ bytesRead: totalBytes, totalBytes, events });

    const deadline = Date.now() + settings.shutdownGraceSeconds * 1000;
    while (queued() > 0 && Date.now() < deadline) await delay(20);
    const undelivered = queued();
    const sinks = registry.sinks().map((s) => ({
      key: s.key,
      status: registry.status(s.key) as SinkStatusSnapshot,
    }));
    return { events, invalid, sinks, undelivered };
  } finally {
    await registry.close();
  }
}

/** Delivery made no progress for the grace period while the queues were full. */
export class ReplayStalled extends Error {
  override readonly name = 'ReplayStalled';
  readonly undelivered: number;

  constructor(undelivered: number) {
    super(`delivery made no progress; ${undelivered} events queued: is a destination down?`);
    this.undelivered = undelivered;
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
