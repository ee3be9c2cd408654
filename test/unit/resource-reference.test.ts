// docs/resource-reference.md is generated from the CRD schemas by
// scripts/gen-resource-reference.ts; the committed page must be what the generator writes now.
// Pure: reads files and formats Markdown with Prettier, starts no process.
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { describe, expect, it } from 'vitest';
import { REFERENCE_PATH, renderResourceReference } from '../../scripts/gen-resource-reference.ts';

const root = new URL('../../', import.meta.url);

describe('docs/resource-reference.md', () => {
  it('is what scripts/gen-resource-reference.ts generates from crds/', async () => {
    const committed = readFileSync(new URL(REFERENCE_PATH, root), 'utf8');
    // On failure: npm run gen:crds
    expect(committed).toBe(await renderResourceReference());
  });

  it('lists every spec field of both CRDs', async () => {
    const page = await renderResourceReference();
    for (const file of ['auditsinks', 'auditpipelines']) {
      const crd = parse(readFileSync(new URL(`crds/${file}.kube-audit.dev.yaml`, root), 'utf8'));
      const spec = crd.spec.versions[0].schema.openAPIV3Schema.properties.spec;
      for (const name of Object.keys(spec.properties as object)) {
        expect(page).toContain(`- \`spec.${name}\` (`);
      }
    }
    expect(page).toContain('- `spec.policy.rules[].resources[].group` (string;');
    expect(page).toContain(
      '- `spec.influxdb.batchSize` (integer (int32); default `2500`; 1 to 100000)',
    );
  });
});
