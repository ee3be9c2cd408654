/**
 * Starts a single-node cluster and keeps running until killed: the owner of a cluster that
 * lifecycle.test.ts kills with SIGKILL, as a crashed test run would die. Prints `ready` once the
 * cluster is up.
 */
import { startNode } from '../../harness/node.ts';

await startNode();
process.stdout.write('ready\n');
// Stay alive (and own the cluster) until killed.
setInterval(() => undefined, 60_000);
