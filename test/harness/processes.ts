/**
 * Servers the test process started (influxd, etcd, kube-apiserver), killed and their directories
 * removed when the process exits or is signalled, even when a test fails before stopping them.
 */
import type { ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';

const live = new Map<number, { child: ChildProcess; dir: string }>();
let exitHookInstalled = false;

/**
 * Kills `child` and removes `dir` if the test process ends while it still runs; forgets it once it
 * exits on its own.
 */
export function trackServer(child: ChildProcess, dir: string, exited: Promise<unknown>): void {
  const pid = child.pid;
  if (pid === undefined) return;
  installExitHook();
  live.set(pid, { child, dir });
  void exited.then(() => live.delete(pid));
}

/** Whether a process with this pid exists. */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // Synchronous, as 'exit' handlers must be: kill by pid and remove the directories.
  const cleanUp = () => {
    for (const { child, dir } of live.values()) {
      child.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    }
    live.clear();
  };
  process.on('exit', cleanUp);
  // A signal ends the process without 'exit': clean up, then let the signal do what it would have.
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(signal, () => {
      cleanUp();
      // Others listening (a test runner) decide themselves; alone, die of the signal as usual.
      if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
    });
  }
}
