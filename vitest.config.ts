import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // CLI tests spawn the built binary; keep them from competing with unit tests on a 2-core runner.
    pool: 'forks',
    testTimeout: 20_000,
  },
});
