// The committed CRDs (crds/ and the chart's copies) are what `npm run gen:crds` generates from
// their declaration in src/sinks/crds.ts, byte for byte. Pure: renders and reads files, starts no
// process.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { renderCrds } from '../../scripts/gen-crds.ts';

const root = new URL('../../', import.meta.url);

describe('the committed CRDs', () => {
  it('are what npm run gen:crds generates, in crds/ and in the chart', async () => {
    const generated = await renderCrds();
    expect([...generated.keys()].sort()).toEqual([
      'charts/kube-audit-operator/crds/auditpipelines.kube-audit.dev.yaml',
      'charts/kube-audit-operator/crds/auditsinks.kube-audit.dev.yaml',
      'crds/auditpipelines.kube-audit.dev.yaml',
      'crds/auditsinks.kube-audit.dev.yaml',
    ]);
    for (const [path, text] of generated) {
      // On failure: npm run gen:crds
      expect(readFileSync(new URL(path, root), 'utf8'), path).toBe(text);
    }
  });
});
