import { defineConfig } from 'vitest/config';

// Integration tests spawn worker threads and child processes from dist/, so `npm test`
// builds first. Tests run in forks: a worker_threads-heavy test must not share a
// thread with another test file's workers.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    pool: 'forks',
    maxWorkers: 2,
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
