// The order of the test projects is part of the test command's contract: on a cold 2-core machine
// the unit tests run first, while the servers of the later projects are built (README, Tests).
import { describe, expect, it } from 'vitest';
import config from '../../vitest.config.ts';

interface Project {
  readonly test: { readonly name: string; readonly sequence?: { readonly groupOrder?: number } };
}

const projects = (config.test?.projects ?? []) as unknown as Project[];
const order = (name: string): number | undefined =>
  projects.find((p) => p.test.name === name)?.test.sequence?.groupOrder;

describe('the test projects', () => {
  it('run the unit project before every other, in a numbered group', () => {
    const unit = order('unit');
    // vitest runs the files of group 0 after all numbered groups when it has one worker.
    expect(unit).toBeGreaterThan(0);
    for (const project of projects) {
      if (project.test.name !== 'unit') {
        expect(project.test.sequence?.groupOrder, project.test.name).toBeGreaterThan(unit ?? 0);
      }
    }
  });

  it('give every project a group of its own', () => {
    const groups = projects.map((p) => p.test.sequence?.groupOrder);
    expect(new Set(groups).size).toBe(projects.length);
  });
});
