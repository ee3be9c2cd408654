// Each sink's own write tokens as the receivers read them: from the current Secrets on every
// request, so that a rotated Secret applies at once. Pure: starts no process.
import { describe, expect, it } from 'vitest';
import { authorize, type TokenDigests } from '../../../src/receiver/auth.ts';
import { missingTokenSecret, SinkTokens, tokenLines } from '../../../src/runtime/credentials.ts';
import type { SecretStore } from '../../../src/runtime/secrets.ts';
import { sinkFromResource } from '../../../src/sinks/spec.ts';
import type { Sink } from '../../../src/sinks/types.ts';
import { auditSinkResource, pipelineResource } from '../../support/resources.ts';

const SETTINGS = { clusterWideNamespaces: [], requireDestination: false };
const WRITERS = { name: 'writers', key: 'tokens' };

function pipeline(namespace: string): Sink {
  return sinkFromResource(
    pipelineResource(
      { policy: { rules: [{ level: 'Metadata' }] }, receiver: { tokenSecretRef: WRITERS } },
      namespace,
      'trail',
    ),
    SETTINGS,
  );
}

const clusterSink = sinkFromResource(
  auditSinkResource(
    {
      policy: { level: 'Metadata', stages: ['ResponseComplete'] },
      receiver: { tokenSecretRef: WRITERS },
    },
    'everything',
  ),
  SETTINGS,
);

function writes(tokens: ReadonlyMap<string, TokenDigests>, token: string, key: string): boolean {
  return authorize(
    `Bearer ${token}`,
    'none',
    { kind: 'sink', key },
    { receiverTokens: new Set(), sinkTokens: tokens },
  ).ok;
}

describe('tokenLines', () => {
  it('reads one token per line, trimmed, without blank lines and comments', () => {
    expect(tokenLines('  alpha \n\n# retired: old\r\nbeta\r\n')).toEqual(['alpha', 'beta']);
  });
});

describe('SinkTokens', () => {
  it("reads each sink's tokens from its own namespace, an AuditSink's from the operator's", () => {
    const secrets = new Map<string, Record<string, string>>([
      ['team-a/writers', { tokens: 'a-token' }],
      ['team-b/writers', { tokens: 'b-token' }],
      ['kube-audit/writers', { tokens: 'cluster-token' }],
    ]);
    const tokens = new SinkTokens(() => secrets, 'kube-audit');
    const a = pipeline('team-a');
    const b = pipeline('team-b');
    tokens.setSinks([a, b, clusterSink]);
    const current = tokens.current();
    expect([...current.keys()]).toEqual([a.key, b.key, clusterSink.key]);
    expect(writes(current, 'a-token', a.key)).toBe(true);
    expect(writes(current, 'a-token', b.key)).toBe(false);
    expect(writes(current, 'cluster-token', clusterSink.key)).toBe(true);
  });

  it('follows a rotated Secret at the next request, and forgets a removed one', () => {
    const secrets = new Map<string, Record<string, string>>([
      ['team-a/writers', { tokens: 'old' }],
    ]);
    const tokens = new SinkTokens(() => secrets, 'kube-audit');
    const a = pipeline('team-a');
    tokens.setSinks([a]);
    expect(writes(tokens.current(), 'old', a.key)).toBe(true);
    secrets.set('team-a/writers', { tokens: 'old\nnew' });
    expect(writes(tokens.current(), 'new', a.key)).toBe(true);
    expect(writes(tokens.current(), 'old', a.key)).toBe(true);
    secrets.set('team-a/writers', { tokens: 'new' });
    expect(writes(tokens.current(), 'old', a.key)).toBe(false);
    secrets.delete('team-a/writers');
    expect(tokens.current().size).toBe(0);
  });

  it('makes digests once per Secret value, not per request', () => {
    const secrets: SecretStore = new Map([['team-a/writers', { tokens: 'a-token' }]]);
    const tokens = new SinkTokens(() => secrets, 'kube-audit');
    tokens.setSinks([pipeline('team-a')]);
    expect(tokens.current().get(pipeline('team-a').key)).toBe(
      tokens.current().get(pipeline('team-a').key),
    );
  });

  it('leaves out a sink whose Secret, key or tokens are missing, and sinks that name none', () => {
    const secrets: SecretStore = new Map([
      ['team-b/writers', { other: 'x' }],
      ['team-c/writers', { tokens: '\n# nothing yet\n' }],
    ]);
    const tokens = new SinkTokens(() => secrets, 'kube-audit');
    const plain = sinkFromResource(
      pipelineResource({ policy: { rules: [{ level: 'Metadata' }] } }, 'team-d'),
      SETTINGS,
    );
    tokens.setSinks([pipeline('team-a'), pipeline('team-b'), pipeline('team-c'), plain]);
    expect(tokens.current().size).toBe(0);
  });
});

describe('missingTokenSecret', () => {
  it.each<[string, SecretStore, string | undefined]>([
    ['a Secret with tokens', new Map([['team-a/writers', { tokens: 'x' }]]), undefined],
    ['no Secret', new Map(), 'Secret team-a/writers'],
    [
      'no key',
      new Map([['team-a/writers', { other: 'x' }]]),
      'key tokens of Secret team-a/writers',
    ],
    [
      'no token in the key',
      new Map([['team-a/writers', { tokens: '# x\n' }]]),
      'a token in key tokens of Secret team-a/writers',
    ],
  ])('names what is missing for %s, never the content', (_name, secrets, expected) => {
    expect(missingTokenSecret(pipeline('team-a'), secrets, 'kube-audit')).toBe(expected);
  });
});
