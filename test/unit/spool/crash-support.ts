// The crash tests' shared pieces: a child process run until it has acknowledged enough batches
// and then SIGKILLed, and the check of a recovered queue against what the child acknowledged.
// The children name events `r<round>-w<writer>-b<batch>-e<i>` and print `acked <batch> <size>`
// once a batch is durable and `committed [<output>] <last auditID>` once a commit is.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const FIXTURE = fileURLToPath(
  new URL('../../fixtures/apiserver-1.20/events.jsonl', import.meta.url),
);
/** Writers per child, each awaiting its appends in turn. */
export const WRITERS = 3;

/** The size the children give a batch: 20 to 180 events, from its writer and number. */
export function batchSize(batch: string): number {
  const [, writer = '', number = ''] = /^r\d+-w(\d+)-b(\d+)$/.exec(batch) ?? [];
  return 20 * (1 + ((Number(number) * 7 + Number(writer)) % 9));
}

interface BatchRun {
  readonly batch: string;
  length: number;
}

/**
 * What is wrong with a recovered log (auditIDs in queue order) given the acknowledged batches:
 * empty when every acknowledged batch is there exactly once, whole and in order, and each batch
 * occupies one contiguous run `e0, e1, ...` of the log.
 */
export function problemsIn(
  log: readonly string[],
  acked: ReadonlyMap<string, number>,
  sizeOf: (batch: string) => number = batchSize,
): string[] {
  const problems: string[] = [];
  if (new Set(log).size !== log.length) problems.push('an event appears twice');
  const runs: BatchRun[] = [];
  for (const id of log) {
    const [, batch = '', index = ''] = /^(r\d+-w\d+-b\d+)-e(\d+)$/.exec(id) ?? [];
    const last = runs.at(-1);
    const run = last?.batch === batch ? last : { batch, length: 0 };
    if (run !== last) runs.push(run);
    if (Number(index) !== run.length) problems.push(`${id} out of place`);
    run.length++;
  }
  const byBatch = new Map(runs.map((r) => [r.batch, r.length]));
  if (byBatch.size !== runs.length) problems.push('a batch is split into several runs');
  for (const [batch, size] of acked) {
    if (byBatch.get(batch) !== size) {
      problems.push(`acknowledged ${batch} has ${byBatch.get(batch) ?? 0} of ${size} events`);
    }
  }
  const rounds = new Set(runs.map((r) => r.batch.split('-')[0]));
  for (const round of rounds) {
    const ofRound = runs.filter((r) => r.batch.startsWith(`${round}-`));
    // Only the batch being written when the round was killed may be cut short.
    for (const r of ofRound.slice(0, -1)) {
      if (r.length !== sizeOf(r.batch)) problems.push(`${r.batch} is incomplete`);
    }
    // A writer awaits each append before the next: its batches are 0, 1, 2, ... in log order.
    for (let w = 0; w < WRITERS; w++) {
      const numbers = ofRound
        .filter((r) => r.batch.startsWith(`${round}-w${w}-`))
        .map((r) => Number(r.batch.split('-b')[1]));
      if (numbers.some((n, i) => n !== i)) problems.push(`${round}-w${w} batches out of order`);
    }
  }
  return problems;
}

/** What a child acknowledged before it was killed. */
export interface ChildRun {
  readonly acked: ReadonlyMap<string, number>;
  /** The last committed auditID of each output (`''` when the child names none). */
  readonly lastCommitted: ReadonlyMap<string, string>;
}

/** Runs the child script until it has acknowledged `ackedBatches` batches, then SIGKILLs it. */
export function runAndKill(
  script: string,
  dir: string,
  round: number,
  ackedBatches: number,
): Promise<ChildRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [script, dir, String(round), FIXTURE], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const acked = new Map<string, number>();
    const lastCommitted = new Map<string, string>();
    let buffered = '';
    let stderr = '';
    let killed = false;
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk;
    });
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      buffered += chunk;
      const lines = buffered.split('\n');
      // Only complete lines count: the last piece may be cut.
      buffered = lines.pop() ?? '';
      for (const line of lines) {
        const parts = line.split(' ');
        if (parts[0] === 'acked' && parts[1] !== undefined) acked.set(parts[1], Number(parts[2]));
        if (parts[0] === 'committed' && parts.length === 2) lastCommitted.set('', parts[1] ?? '');
        if (parts[0] === 'committed' && parts.length === 3) {
          lastCommitted.set(parts[1] ?? '', parts[2] ?? '');
        }
      }
      if (!killed && acked.size >= ackedBatches) {
        killed = true;
        // A random moment, so that some kills land inside a write or an fsync.
        setTimeout(() => child.kill('SIGKILL'), Math.random() * 20);
      }
    });
    child.on('error', reject);
    child.on('close', (code, signal) => {
      if (signal === 'SIGKILL') resolve({ acked, lastCommitted });
      else reject(new Error(`child exited with ${String(code)} before the kill:\n${stderr}`));
    });
  });
}
