/**
 * The machine-wide state a single-node cluster (node.ts) changes, and how to put each piece back:
 * sysctls, the node's bridge and routes, iptables chains and rules, mounts, the `kubepods`
 * cgroups, processes the cluster left, and directories its components create outside the
 * cluster's state directory. Also a snapshot of all of it, so tests can show that a stop or a
 * reap left nothing behind. Starts nothing; every function needs root.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  existsSync,
  lstatSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

// ---- sysctls ------------------------------------------------------------------------------------

/**
 * Every machine-wide sysctl a component of the node may change, and who does: the kubelet's
 * kernel tunables (pkg/kubelet/cm setupKernelTunables), the CNI bridge plugin (isGateway turns
 * on forwarding) and kube-proxy (route_localnet, unless localhostNodePorts is false).
 */
export const NODE_SYSCTLS: readonly string[] = [
  'vm.overcommit_memory',
  'vm.panic_on_oom',
  'kernel.panic',
  'kernel.panic_on_oops',
  'kernel.keys.root_maxkeys',
  'kernel.keys.root_maxbytes',
  'net.ipv4.ip_forward',
  'net.ipv4.conf.all.forwarding',
  'net.ipv4.conf.all.route_localnet',
];

function sysctlPath(key: string): string {
  return join('/proc/sys', ...key.split('.'));
}

/** The current values of `keys` (those the kernel has). */
export function readSysctls(keys: readonly string[]): Record<string, string> {
  const values: Record<string, string> = {};
  for (const key of keys) {
    try {
      values[key] = readFileSync(sysctlPath(key), 'utf8').trim();
    } catch {
      // Not on this kernel (or its module is not loaded): nothing to restore.
    }
  }
  return values;
}

/** Writes back every value that differs now; returns what it could not restore. */
export function restoreSysctls(values: Readonly<Record<string, string>>): string[] {
  const failed: string[] = [];
  for (const [key, value] of Object.entries(values)) {
    try {
      const now = readFileSync(sysctlPath(key), 'utf8').trim();
      if (now !== value) writeFileSync(sysctlPath(key), value);
    } catch (err) {
      failed.push(`${key}=${value}: ${(err as Error).message}`);
    }
  }
  return failed;
}

/** Per-interface trees: they come and go with the links. */
const PER_INTERFACE = /^net\.ipv[46]\.(conf|neigh)\.(?!all\.|default\.)/;
/** Values the kernel changes on its own. */
const VOLATILE = /^(kernel\.(ns_last_pid|random\.|pty\.nr|tainted|sched_domain)|fs\.)/;

/**
 * Every readable, writable sysctl under kernel, vm and net but the per-interface ones and those
 * the kernel changes by itself: what a test compares before a start and after a stop.
 */
export function writableSysctls(): Record<string, string> {
  const values: Record<string, string> = {};
  const walk = (dir: string, key: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      const name = key === '' ? entry.name : `${key}.${entry.name}`;
      if (PER_INTERFACE.test(`${name}.`) || VOLATILE.test(name)) continue;
      if (entry.isDirectory()) {
        walk(path, name);
        continue;
      }
      // Owner read and write: the tunables (others are counters or write-only triggers).
      if ((statSync(path).mode & 0o600) !== 0o600) continue;
      try {
        values[name] = readFileSync(path, 'utf8').trim();
      } catch {
        // Some answer EIO or EPERM to a read: not state anyone sets.
      }
    }
  };
  for (const tree of ['kernel', 'vm', 'net']) walk(join('/proc/sys', tree), tree);
  return values;
}

// ---- network ------------------------------------------------------------------------------------

async function ip(args: string[]): Promise<void> {
  await run('ip', args);
}

/** Whether a network interface of that name exists. */
export function linkExists(name: string): boolean {
  return existsSync(join('/sys/class/net', name));
}

/**
 * A bridge with no ports that carries `address` as a /32 (the node's own address: this kernel has
 * no `dummy` driver), and routes of `routes` through it: traffic to a destination no component
 * translates ends there instead of on the default route.
 */
export async function createAddressBridge(
  name: string,
  address: string,
  routes: readonly string[],
): Promise<void> {
  if (!linkExists(name)) await ip(['link', 'add', name, 'type', 'bridge']);
  await ip(['addr', 'replace', `${address}/32`, 'dev', name]);
  await ip(['link', 'set', name, 'up']);
  for (const route of routes) await ip(['route', 'replace', route, 'dev', name]);
}

/** Deletes a link (and with it its addresses and routes) if it exists. */
export async function deleteLink(name: string): Promise<void> {
  if (linkExists(name)) await ip(['link', 'del', name]);
}

/** One iptables rule: family, table, chain, and the rule's match and target arguments. */
export interface IptablesRule {
  readonly family: 'ipv4' | 'ipv6';
  readonly table: string;
  readonly chain: string;
  readonly spec: readonly string[];
}

function iptables(family: 'ipv4' | 'ipv6'): string {
  return family === 'ipv4' ? 'iptables' : 'ip6tables';
}

/** Whether the rule is in place. */
export async function hasRule(rule: IptablesRule): Promise<boolean> {
  try {
    await run(iptables(rule.family), ['-w', '-t', rule.table, '-C', rule.chain, ...rule.spec]);
    return true;
  } catch {
    return false;
  }
}

/** Inserts the rule first in its chain unless it is there. */
export async function insertRule(rule: IptablesRule): Promise<void> {
  if (await hasRule(rule)) return;
  await run(iptables(rule.family), ['-w', '-t', rule.table, '-I', rule.chain, ...rule.spec]);
}

/** Deletes every copy of the rule. */
export async function deleteRule(rule: IptablesRule): Promise<void> {
  while (await hasRule(rule)) {
    await run(iptables(rule.family), ['-w', '-t', rule.table, '-D', rule.chain, ...rule.spec]);
  }
}

/** Splits one iptables-save line into arguments: words, or double-quoted strings with \" inside. */
export function iptablesArgs(line: string): string[] {
  const args: string[] = [];
  const word = /"((?:[^"\\]|\\.)*)"|(\S+)/g;
  for (const m of line.matchAll(word)) {
    args.push(m[1] === undefined ? (m[2] ?? '') : m[1].replace(/\\(.)/g, '$1'));
  }
  return args;
}

/** One table of iptables-save: its chains and its rules (each an `-A <chain> ...` argument list). */
interface SavedTable {
  readonly name: string;
  readonly chains: string[];
  readonly rules: string[][];
}

async function savedTables(family: 'ipv4' | 'ipv6'): Promise<SavedTable[]> {
  let out: string;
  try {
    out = (await run(`${iptables(family)}-save`, [])).stdout;
  } catch {
    // No iptables on this machine: nothing of ours can be there.
    return [];
  }
  const tables: SavedTable[] = [];
  let current: SavedTable | undefined;
  for (const line of out.split('\n')) {
    if (line.startsWith('*')) {
      current = { name: line.slice(1), chains: [], rules: [] };
      tables.push(current);
    } else if (current !== undefined && line.startsWith(':')) {
      current.chains.push(line.slice(1).split(' ')[0] ?? '');
    } else if (current !== undefined && line.startsWith('-A ')) {
      current.rules.push(iptablesArgs(line));
    }
  }
  return tables;
}

/** Chains Kubernetes components (KUBE-) and CNI plugins (CNI-) create. */
const CLUSTER_CHAIN = /^(KUBE|CNI)-/;

/** Rules whose text carries this comment were added by the node harness. */
export const GUARD_COMMENT = 'kube-audit-operator node guard';

/**
 * Removes every KUBE- and CNI- chain, in IPv4 and IPv6, and every rule that jumps to one from
 * another chain: what kube-proxy and the kubelet leave (the kubelet's KUBE-FIREWALL,
 * KUBE-KUBELET-CANARY and KUBE-IPTABLES-HINT stay after it stops). Deletes by rule text, never by
 * position, so a concurrent writer of other rules (a Docker engine) is not hit.
 */
export async function removeClusterChains(): Promise<void> {
  for (const family of ['ipv4', 'ipv6'] as const) {
    const bin = iptables(family);
    for (const table of await savedTables(family)) {
      const ours = table.chains.filter((c) => CLUSTER_CHAIN.test(c));
      for (const rule of table.rules) {
        const chain = rule[1] ?? '';
        const jump = rule.findIndex((a) => a === '-j' || a === '-g');
        const target = jump < 0 ? '' : (rule[jump + 1] ?? '');
        if (!CLUSTER_CHAIN.test(chain) && CLUSTER_CHAIN.test(target)) {
          await run(bin, ['-w', '-t', table.name, '-D', ...rule.slice(1)]).catch(() => undefined);
        }
      }
      // Flush all before deleting any: they jump to each other.
      for (const chain of ours) await run(bin, ['-w', '-t', table.name, '-F', chain]);
      for (const chain of ours) await run(bin, ['-w', '-t', table.name, '-X', chain]);
    }
  }
}

/** Every line of iptables-save (IPv4 and IPv6) that names a cluster chain or a guard rule. */
export async function clusterIptablesLines(): Promise<string[]> {
  const lines: string[] = [];
  for (const family of ['ipv4', 'ipv6'] as const) {
    for (const table of await savedTables(family)) {
      for (const chain of table.chains) {
        if (CLUSTER_CHAIN.test(chain)) lines.push(`${family} ${table.name} chain ${chain}`);
      }
      for (const rule of table.rules) {
        const text = rule.join(' ');
        if (rule.some((a) => CLUSTER_CHAIN.test(a)) || text.includes(GUARD_COMMENT)) {
          lines.push(`${family} ${table.name} ${text}`);
        }
      }
    }
  }
  return lines;
}

// ---- mounts -------------------------------------------------------------------------------------

/** Mount points at or under `dir` (from /proc/self/mountinfo), deepest first. */
export function mountsUnder(dir: string): string[] {
  const points = readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((line) => line.split(' ')[4])
    .filter((p): p is string => p !== undefined)
    // mountinfo escapes space, tab, newline and backslash as octal.
    .map((p) => p.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))))
    .filter((p) => p === dir || p.startsWith(`${dir}/`));
  return [...new Set(points)].sort((a, b) => b.length - a.length);
}

/**
 * Unmounts everything under `dir`, deepest first, until nothing is left: the kubelet bind-mounts
 * its root directory onto itself (shared), pod volumes are tmpfs mounts inside it, and containerd
 * mounts each container's rootfs, each sandbox's /dev/shm and each pod's network namespace. A
 * mount still busy is detached lazily.
 */
export async function unmountUnder(dir: string): Promise<void> {
  for (let round = 0; round < 10; round++) {
    const points = mountsUnder(dir);
    if (points.length === 0) return;
    for (const point of points) {
      await run('umount', [point]).catch(() => run('umount', ['-l', point]).catch(() => undefined));
    }
  }
  const left = mountsUnder(dir);
  if (left.length > 0) throw new Error(`cannot unmount ${left.join(', ')}`);
}

// ---- cgroups and processes ----------------------------------------------------------------------

/** The kubelet's cgroup root with the cgroupfs driver and cgroupsPerQOS. */
const KUBEPODS = 'kubepods';

/** Every mounted cgroup hierarchy (v1 controllers, the unified v2 tree). */
function cgroupMounts(): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter((line) => / - cgroup2? /.test(line))
    .map((line) => line.split(' ')[4])
    .filter((p): p is string => p !== undefined);
}

/** Every `kubepods` cgroup directory and its descendants, in every hierarchy, deepest first. */
export function kubepodsCgroups(): string[] {
  const dirs: string[] = [];
  const walk = (dir: string) => {
    dirs.push(dir);
    try {
      for (const entry of readdirSync(dir, { withFileTypes: true })) {
        if (entry.isDirectory()) walk(join(dir, entry.name));
      }
    } catch {
      // removed meanwhile (the kubelet cleans up pod cgroups)
    }
  };
  for (const mount of cgroupMounts()) {
    const root = join(mount, KUBEPODS);
    if (existsSync(root)) walk(root);
  }
  return dirs.sort((a, b) => b.length - a.length);
}

/**
 * The memory controller's kubepods directory: v1's memory hierarchy when mounted (a hybrid
 * layout's unified tree has no controllers), else the v2 tree; with the names of its files.
 */
function memoryKubepods(): { dir: string; usage: string; peak: string } | undefined {
  let v2: string | undefined;
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const [mount, fs] = line.split(' - ');
    const point = mount?.split(' ')[4];
    const [type, , options] = (fs ?? '').split(' ');
    if (point === undefined) continue;
    if (type === 'cgroup' && options?.split(',').includes('memory') === true) {
      return {
        dir: join(point, KUBEPODS),
        usage: 'memory.usage_in_bytes',
        peak: 'memory.max_usage_in_bytes',
      };
    }
    if (type === 'cgroup2') v2 = point;
  }
  return v2 === undefined
    ? undefined
    : { dir: join(v2, KUBEPODS), usage: 'memory.current', peak: 'memory.peak' };
}

/** Bytes in use by everything in the pods' cgroups (containers, sandboxes, page cache). */
export function podsMemoryUsage(): number {
  const memory = memoryKubepods();
  if (memory === undefined) return 0;
  try {
    return Number(readFileSync(join(memory.dir, memory.usage), 'utf8'));
  } catch {
    return 0;
  }
}

/**
 * A container's peak memory in bytes since it started, from its own cgroup (named after its
 * containerd id with the cgroupfs driver); undefined when no such cgroup exists.
 */
export function containerPeakMemory(containerId: string): number | undefined {
  const memory = memoryKubepods();
  if (memory === undefined || !existsSync(memory.dir)) return undefined;
  const find = (dir: string): string | undefined => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      if (!entry.isDirectory()) continue;
      const path = join(dir, entry.name);
      if (entry.name === containerId) return path;
      const found = find(path);
      if (found !== undefined) return found;
    }
    return undefined;
  };
  const dir = find(memory.dir);
  return dir === undefined ? undefined : Number(readFileSync(join(dir, memory.peak), 'utf8'));
}

/** Pids in any `kubepods` cgroup: containers, and their sandboxes. */
export function podProcesses(): number[] {
  const pids = new Set<number>();
  for (const dir of kubepodsCgroups()) {
    try {
      for (const pid of readFileSync(join(dir, 'cgroup.procs'), 'utf8').split('\n')) {
        if (pid !== '') pids.add(Number(pid));
      }
    } catch {
      // removed meanwhile
    }
  }
  return [...pids];
}

/** Removes every `kubepods` cgroup, deepest first; returns those it could not (still in use). */
export function removeKubepodsCgroups(): string[] {
  const left: string[] = [];
  for (const dir of kubepodsCgroups()) {
    try {
      rmdirSync(dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') left.push(dir);
    }
  }
  return left;
}

/** A process's command line as arguments, or undefined when it is gone or a zombie. */
export function commandLine(pid: number): string[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The state follows the parenthesised command name, which may itself contain spaces.
    if (stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z')) return undefined;
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').slice(0, -1);
  } catch {
    return undefined;
  }
}

/** Every live process whose command line names `dir`. */
export function processesNaming(dir: string): number[] {
  const pids: number[] = [];
  for (const name of readdirSync('/proc')) {
    const pid = Number(name);
    if (!Number.isInteger(pid) || pid === process.pid) continue;
    if (commandLine(pid)?.some((arg) => arg.includes(dir)) === true) pids.push(pid);
  }
  return pids;
}

/**
 * Where a containerd 1.6 shim listens: /run/containerd/s/<sha256 of address/namespace/id>, a
 * fixed directory whatever containerd's state directory (runtime/v2/shim SocketAddress). A shim
 * that is killed leaves the socket file.
 */
export function shimSocket(address: string, namespace: string, id: string): string {
  const digest = createHash('sha256')
    .update(join(address, namespace, id))
    .digest('hex');
  return join('/run/containerd/s', digest);
}

// ---- directories outside the state directory ----------------------------------------------------

/**
 * Directories the components create outside the cluster's state directory whatever they are
 * told: the kubelet's /var/log/containers (symlinks to the pods' logs), libcni's result cache
 * /var/lib/cni, and containerd's shim sockets under /run/containerd.
 */
export const HOST_DIRECTORIES: readonly string[] = [
  '/var/log/containers',
  '/var/lib/cni',
  '/run/containerd',
];

/** Which of {@link HOST_DIRECTORIES} exist now. */
export function existingHostDirectories(): Record<string, boolean> {
  return Object.fromEntries(HOST_DIRECTORIES.map((d) => [d, existsSync(d)]));
}

/**
 * Removes what the cluster left outside its state directory: /var/log/containers symlinks into
 * `stateDir`, the cached CNI results of the sandboxes of `network`, then every directory of
 * {@link HOST_DIRECTORIES} (and its empty subdirectories) that did not exist before the start
 * and is now empty.
 */
export function removeHostLeftovers(
  stateDir: string,
  network: string,
  existedBefore: Readonly<Record<string, boolean>>,
): void {
  const logs = '/var/log/containers';
  if (existsSync(logs)) {
    for (const name of readdirSync(logs)) {
      const link = join(logs, name);
      try {
        if (lstatSync(link).isSymbolicLink() && readlinkSync(link).startsWith(`${stateDir}/`)) {
          rmSync(link);
        }
      } catch {
        // gone meanwhile
      }
    }
  }
  // libcni caches each sandbox's result of our network (<network>-<sandbox id>-eth0), and
  // containerd its loopback's (cni-loopback-<sandbox id>-lo): a reaped sandbox leaves both.
  const results = '/var/lib/cni/results';
  if (existsSync(results)) {
    const names = readdirSync(results);
    const sandboxes = names
      .filter((name) => name.startsWith(`${network}-`))
      .map((name) => name.slice(network.length + 1).split('-')[0]);
    for (const name of names) {
      const [prefix, id] = name.startsWith(`${network}-`)
        ? [network, name.slice(network.length + 1).split('-')[0]]
        : ['cni-loopback', name.slice('cni-loopback-'.length).split('-')[0]];
      if (name.startsWith(`${prefix}-`) && sandboxes.includes(id)) {
        rmSync(join(results, name), { force: true });
      }
    }
  }
  const removeEmpty = (dir: string): boolean => {
    let empty = true;
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      if (!entry.isDirectory() || !removeEmpty(join(dir, entry.name))) empty = false;
    }
    if (!empty) return false;
    try {
      rmdirSync(dir);
      return true;
    } catch {
      return false;
    }
  };
  for (const dir of HOST_DIRECTORIES) {
    if (existedBefore[dir] === false && existsSync(dir)) removeEmpty(dir);
  }
}

// ---- a snapshot of all of it --------------------------------------------------------------------

/** What the machine holds that a cluster could leave behind; equal before a start and after a stop. */
export interface HostSnapshot {
  /** `<pid> <command>` of processes naming the state directory or living in a kubepods cgroup. */
  readonly processes: string[];
  /** Mount points under the state directory. */
  readonly mounts: string[];
  /** Links whose name starts with the cluster's prefix. */
  readonly links: string[];
  /** Routes (all tables) that name the cluster's prefix or address ranges. */
  readonly routes: string[];
  /** iptables chains and rules of the cluster (see {@link clusterIptablesLines}). */
  readonly iptables: string[];
  /** kubepods cgroup directories. */
  readonly cgroups: string[];
  /** See {@link writableSysctls}. */
  readonly sysctls: Record<string, string>;
  /** Entries of each of {@link HOST_DIRECTORIES}, or null when it does not exist. */
  readonly hostDirectories: Record<string, string[] | null>;
}

/**
 * Everything a cluster with this state directory, link-name prefix and address prefixes (e.g.
 * `10.244.`) could leave on the machine.
 */
export async function snapshotHost(
  stateDir: string,
  linkPrefix: string,
  addressPrefixes: readonly string[],
): Promise<HostSnapshot> {
  const pids = new Set([...processesNaming(stateDir), ...podProcesses()]);
  const processes = [...pids]
    .map((pid) => `${pid} ${(commandLine(pid) ?? []).join(' ')}`)
    .filter((p) => !p.endsWith(' '))
    .sort();
  const routes = (await run('ip', ['route', 'show', 'table', 'all'])).stdout
    .split('\n')
    .filter((r) => r.includes(linkPrefix) || addressPrefixes.some((p) => r.includes(p)));
  const links = readdirSync('/sys/class/net').filter((l) => l.startsWith(linkPrefix));
  const hostDirectories = Object.fromEntries(
    HOST_DIRECTORIES.map((d) => [d, existsSync(d) ? readdirSync(d).sort() : null]),
  );
  return {
    processes,
    mounts: existsSync(stateDir) ? mountsUnder(stateDir) : [],
    links: links.sort(),
    routes: routes.sort(),
    iptables: (await clusterIptablesLines()).sort(),
    cgroups: kubepodsCgroups().sort(),
    sysctls: writableSysctls(),
    hostDirectories,
  };
}
