/**
 * Noticing file changes by polling: robust where `fs.watch` is not (files replaced by rename, as
 * editors and Kubernetes' atomic Secret and ConfigMap updates do, and network file systems).
 */
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * A cheap fingerprint of a file or directory tree: names, sizes and modification times. Changes
 * whenever a file is added, removed, replaced or written.
 */
export async function treeSignature(path: string): Promise<string> {
  try {
    const info = await stat(path);
    if (!info.isDirectory()) return `${path}:${info.size}:${info.mtimeMs}`;
    const entries = await readdir(path, { withFileTypes: true, recursive: true });
    const parts = await Promise.all(
      entries
        // stat follows links: a symlinked manifest counts with its target's size and time.
        .filter((e) => e.isFile() || e.isSymbolicLink())
        .map(async (e) => {
          const file = join(e.parentPath, e.name);
          const s = await stat(file).catch(() => undefined);
          return s?.isFile() === true ? `${file}:${s.size}:${s.mtimeMs}` : '';
        }),
    );
    // A file removed between listing and stat counts as gone, as it is a moment later.
    return parts
      .filter((p) => p !== '')
      .sort()
      .join('\n');
  } catch {
    return 'missing';
  }
}

/**
 * Calls `onChange` (one call at a time) whenever the signature of any path changes; a failing
 * `onChange` is handed to `onError` and retried at the next change.
 */
export function watchPaths(
  paths: () => readonly string[],
  intervalMs: number,
  onChange: () => Promise<void>,
  onError: (err: unknown) => void,
): { stop(): Promise<void> } {
  let last: string | undefined;
  let running: Promise<void> | undefined;
  let stopped = false;
  const check = () => {
    if (running !== undefined || stopped) return;
    running = run().finally(() => {
      running = undefined;
    });
  };
  const run = async () => {
    const signature = (await Promise.all(paths().map(treeSignature))).join('\n--\n');
    try {
      if (last !== undefined && signature !== last && !stopped) await onChange();
    } catch (err) {
      onError(err);
    } finally {
      // Even after a failure: the next change triggers the next attempt, not every tick.
      last = signature;
    }
  };
  check();
  const timer = setInterval(check, intervalMs);
  timer.unref();
  return {
    /** Stops watching, and waits for a change being applied to finish. */
    stop: async () => {
      stopped = true;
      clearInterval(timer);
      await running;
    },
  };
}
