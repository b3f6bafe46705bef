/**
 * Runs `sluice bench` without the main CLI: `node dist/bench/ws-cli.js [options]` takes the
 * same options (src/cli/bench.ts). The smoke test uses it; so can anyone before `bench` is
 * wired into src/cli/main.ts. Exit codes as main.ts: 0 ok, 1 error, 2 usage.
 */
import { CommanderError } from 'commander';
import { benchCommand } from '../src/cli/bench.js';

try {
  await benchCommand().exitOverride().parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) process.exitCode = err.exitCode === 0 ? 0 : 2;
  else {
    process.stderr.write(`sluice bench: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exitCode = 1;
  }
}
