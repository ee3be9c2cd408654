// What delivery tells the log, through a real pino logger writing into memory: a failure when it
// starts and at most once a minute while it lasts, the recovery, and dead letters by auditID
// without event contents or credentials. Starts no process.
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import type { AuditEvent } from '../../../src/audit/types.ts';
import { type Output, OutputError } from '../../../src/outputs/types.ts';
import type { DeadLetter } from '../../../src/sinks/dead-letter.ts';
import { sinkFromResource } from '../../../src/sinks/spec.ts';
import { createLogger } from '../../../src/telemetry/logger.ts';
import { SinkLog } from '../../../src/telemetry/sink-log.ts';
import { recordedEvents } from '../../support/recorded.ts';
import { pipelineResource } from '../../support/resources.ts';

const SINK = sinkFromResource(
  pipelineResource({ policy: { rules: [{ level: 'Metadata' }] } }, 'shop', 'orders'),
  { clusterWideNamespaces: ['kube-audit'], requireDestination: false },
);
const OUTPUT: Output = {
  kind: 'influxdb',
  target: 'http://127.0.0.1:8086 org=o bucket=b',
  write: () => Promise.resolve(),
  close: () => Promise.resolve(),
};
const SECRET_EVENT: AuditEvent = {
  ...(recordedEvents()[0] as AuditEvent),
  auditID: 'a-1',
  requestObject: { kind: 'Secret', data: { password: 'hunter2' } },
};

function logged() {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
      done();
    },
  });
  let now = 0;
  const log = new SinkLog(createLogger('info', stream), () => now);
  return { lines, log, advance: (ms: number) => (now += ms) };
}

const unreachable = new OutputError('UNREACHABLE', 'connect ECONNREFUSED', { retryable: true });

describe('sink log', () => {
  it('says when a destination starts failing, again at most once a minute, and when it writes again', async () => {
    const { lines, log, advance } = logged();
    log.failed(SINK, OUTPUT, unreachable, 400, 1);
    advance(1_000);
    log.failed(SINK, OUTPUT, unreachable, 400, 2);
    advance(60_000);
    log.failed(SINK, OUTPUT, unreachable, 400, 3);
    advance(5_000);
    log.delivered(SINK, OUTPUT);
    log.delivered(SINK, OUTPUT);
    await new Promise((resolve) => setImmediate(resolve));
    expect(lines.map((l) => [l.level, l.msg, l.attempt ?? l.attempts])).toEqual([
      [40, 'destination write failed; the events stay queued and are retried with backoff', 1],
      [40, 'destination write failed; the events stay queued and are retried with backoff', 3],
      [30, 'destination writes again', 3],
    ]);
    expect(lines[0]).toMatchObject({
      sink: SINK.key,
      output: 'influxdb',
      code: 'UNREACHABLE',
      events: 400,
      err: { message: 'connect ECONNREFUSED' },
    });
    expect(lines[2]).toMatchObject({ failingSeconds: 66 });
  });

  it('logs a new kind of failure at once, and a permanent one as such', async () => {
    const { lines, log } = logged();
    log.failed(SINK, OUTPUT, unreachable, 1, 1);
    log.failed(SINK, OUTPUT, new OutputError('UNAUTHORIZED', '401', { retryable: false }), 1, 2);
    await new Promise((resolve) => setImmediate(resolve));
    expect(lines.map((l) => l.code)).toEqual(['UNREACHABLE', 'UNAUTHORIZED']);
    expect(lines[1]?.msg).toMatch(/re-checked every minute/);
  });

  it('names dead letters by auditID at warn, and never their contents', async () => {
    const { lines, log } = logged();
    const letter: DeadLetter = {
      output: 'influxdb',
      reason: 'refused',
      code: 'REJECTED',
      message: '422 partial write',
      event: SECRET_EVENT,
    };
    log.failed(SINK, OUTPUT, new OutputError('REJECTED', '422', { retryable: false }), 1, 1);
    log.deadLettered(SINK, OUTPUT, [letter], [], undefined);
    log.deadLettered(SINK, OUTPUT, [], [letter], new Error('ENOSPC'));
    await new Promise((resolve) => setImmediate(resolve));
    expect(lines.map((l) => [l.level, l.kept, l.lost, l.auditIDs])).toEqual([
      [40, 1, 0, ['a-1']],
      [50, 0, 1, ['a-1']],
    ]);
    expect(lines[1]).toMatchObject({ storeError: 'ENOSPC' });
    expect(JSON.stringify(lines)).not.toContain('hunter2');
  });
});
