/**
 * Authentication benchmark: what deciding one audit request's credentials costs (ADR 0018), with
 * the kube-apiserver's receiver-wide token and 0, 10, 100 or 1,000 sinks naming their own writers'
 * tokens (two each, as during a rotation). Every accepted token is compared on every request, so
 * the cost grows with their number; measured for the apiserver's token, a sink's own token on its
 * endpoint, and a token no one accepts.
 *
 * `node bench/auth.ts [--quick]` runs it alone.
 */
import { type AuthTarget, authorize, TokenDigests } from '../src/receiver/auth.ts';
import { FULL, type HarnessOptions, type Measurement, measure, QUICK } from './harness.ts';

/** One decision workload. */
export interface AuthResult extends Measurement {
  /** Sinks that name their own tokens. */
  readonly sinks: number;
  /** Accepted tokens in all: the receiver-wide one and two per sink. */
  readonly tokens: number;
  readonly credential: 'receiver-wide' | 'own sink' | 'unknown';
}

// 32 random bytes in base64url, as `openssl rand -base64 32` or the chart's generated token.
const token = (label: string) => `${label}-${'x'.repeat(43 - label.length - 1)}`;

/** Runs the decision workloads. */
export function runAuthBench(options: HarnessOptions): AuthResult[] {
  const results: AuthResult[] = [];
  for (const sinks of [0, 10, 100, 1000]) {
    const sinkTokens = new Map<string, TokenDigests>();
    for (let i = 0; i < sinks; i++) {
      sinkTokens.set(
        `AuditPipeline/tenant-${i}/trail`,
        TokenDigests.of([token(`old${i}`), token(`new${i}`)]),
      );
    }
    const credentials = { receiverTokens: new Set([token('apiserver')]), sinkTokens };
    const target: AuthTarget =
      sinks === 0 ? { kind: 'all' } : { kind: 'sink', key: 'AuditPipeline/tenant-0/trail' };
    const presented = [
      ['receiver-wide', token('apiserver')],
      ...(sinks === 0 ? [] : [['own sink', token('new0')] as const]),
      ['unknown', token('nobody')],
    ] as const;
    for (const [credential, value] of presented) {
      const header = `Bearer ${value}`;
      const m = measure(
        `${credential} token, ${sinks} sinks with their own`,
        1,
        () => authorize(header, 'none', target, credentials).ok,
        options,
      );
      results.push({ ...m, sinks, tokens: 1 + 2 * sinks, credential });
    }
  }
  return results;
}

/** Prints the results as a table. */
export function printAuthResults(results: readonly AuthResult[]): void {
  console.log('\nAuthentication: one decision, every accepted token compared\n');
  console.table(
    results.map((r) => ({
      workload: r.name,
      tokens: r.tokens,
      'µs/decision': r.microsecondsPerCall,
      'decisions/s': r.eventsPerSecond.toLocaleString('en-US'),
    })),
  );
}

if (import.meta.main) {
  printAuthResults(runAuthBench(process.argv.includes('--quick') ? QUICK : FULL));
}
