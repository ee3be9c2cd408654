/**
 * An in-memory Kubernetes API for the operator's unit tests: a fake of the API, not a mock of each
 * call. It keeps objects as the apiserver does (uid, resourceVersion, generation bumped by spec
 * changes only, status written through its own merge patch), answers a stale or duplicate write
 * with 409, a missing object with 404, and 403, any error or a held answer where a test asks for
 * it; its watches list and then see every change, as a label- and field-selected watch would
 * (an object that stops matching is deleted from it). Tests assert on what it holds: the status,
 * the Events, the Lease, the ConfigMaps, the native AuditSinks, the watches open. Starts no
 * process and opens no socket; nothing in it waits on a timer.
 */
import {
  type ConfigMapObject,
  type EventRecord,
  type KubeApi,
  KubeApiError,
  type KubeObject,
  type Lease,
  type ObjectMeta,
  type ObjectWatch,
  type OwnerReference,
  type ReviewedUser,
  SECRET_OPT_IN_LABEL,
  type SecretObject,
} from '../../src/operator/kube.ts';
import type { SinkKind } from '../../src/sinks/types.ts';

/** A call of the API, by its method name. */
export type Operation = keyof KubeApi;

/** The kinds of object the fake keeps. */
export type StoredKind =
  'AuditSink' | 'AuditPipeline' | 'Secret' | 'Lease' | 'ConfigMap' | 'NativeAuditSink';

const CLUSTER_SCOPED: ReadonlySet<StoredKind> = new Set(['AuditSink', 'NativeAuditSink']);

/** An object as the fake keeps it. */
export interface Stored {
  apiVersion?: string;
  kind?: string;
  metadata: ObjectMeta & { name: string; namespace?: string; ownerReferences?: OwnerReference[] };
  spec?: unknown;
  status?: unknown;
  data?: Record<string, string>;
  stringData?: Record<string, string>;
  [field: string]: unknown;
}

/** An Event as created through the API. */
export interface RecordedEvent extends EventRecord {
  /** Where it was created: the object's namespace, `default` for cluster-scoped objects. */
  readonly namespace: string;
  readonly component: string;
  readonly time: Date;
}

/** Calls of one operation held until the test releases them: latency under the test's control. */
export interface Gate {
  /** Calls waiting now. */
  readonly waiting: number;
  /** Resolves once `count` calls (in all) have arrived at the gate. */
  arrived(count?: number): Promise<void>;
  /** Lets every waiting call and every later one through. */
  release(): void;
}

/** A KubeApiError as the apiserver's Status would give it. */
export function apiError(status: number, reason: string, message: string): KubeApiError {
  return new KubeApiError(status, message, reason);
}

/** 409: a write against a version that is no longer current, or a create of an existing name. */
export function conflict(what = 'the object'): KubeApiError {
  return apiError(
    409,
    'Conflict',
    `Operation cannot be fulfilled on ${what}: the object has been modified; please apply your changes to the latest version and try again`,
  );
}

/** 404 for a missing object. */
export function notFound(what = 'the object'): KubeApiError {
  return apiError(404, 'NotFound', `${what} not found`);
}

/** 403: RBAC does not allow the call. */
export function forbidden(what = 'the call'): KubeApiError {
  return apiError(403, 'Forbidden', `${what} is forbidden`);
}

/** 500: the apiserver failed (etcd unavailable, say). */
export function serverError(): KubeApiError {
  return apiError(500, 'InternalError', 'Internal error occurred: etcdserver: request timed out');
}

/** No answer within the call's deadline, as the client reports it. */
export function timeout(what = 'call'): KubeApiError {
  return apiError(0, 'Timeout', `${what}: no answer within 10000 ms`);
}

function copy<T>(value: T): T {
  return value === undefined ? value : (JSON.parse(JSON.stringify(value)) as T);
}

function idOf(namespace: string | undefined, name: string): string {
  return `${namespace ?? ''}/${name}`;
}

// RFC 7386, as the apiserver applies a merge patch.
function mergePatch(target: unknown, patch: unknown): unknown {
  if (typeof patch !== 'object' || patch === null || Array.isArray(patch)) return patch;
  const result: Record<string, unknown> =
    typeof target === 'object' && target !== null && !Array.isArray(target)
      ? { ...(target as Record<string, unknown>) }
      : {};
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) delete result[key];
    else result[key] = mergePatch(result[key], value);
  }
  return result;
}

// Equality-based selectors only (`a=b,c!=d`): what the operator uses. Anything else throws, so a
// test never passes on a selector the fake misreads.
function selects(selector: string, labels: Record<string, string> | undefined): boolean {
  if (selector === '') return true;
  return selector.split(',').every((term) => {
    const match = /^([^=!]+)(==|=|!=)(.*)$/.exec(term.trim());
    if (match === null) throw new Error(`label selector ${selector}: not supported by the fake`);
    const [, key = '', op, value] = match;
    const actual = labels?.[key];
    return op === '!=' ? actual !== value : actual === value;
  });
}

type Listener = (before: Stored | undefined, after: Stored | undefined) => void;

/** Where a watch gets its objects from. */
interface WatchSource<T> {
  readonly list: () => Promise<Stored[]>;
  readonly attach: (listener: Listener, watch: FakeWatch<T>) => void;
  readonly detach: (watch: FakeWatch<T>) => void;
  readonly matches: (obj: Stored) => boolean;
}

class GateImpl implements Gate {
  #arrivals = 0;
  #open = false;
  readonly #waiting: (() => void)[] = [];
  readonly #watchers: { count: number; resolve: () => void }[] = [];

  get waiting(): number {
    return this.#waiting.length;
  }

  async pass(): Promise<void> {
    this.#arrivals++;
    for (const w of this.#watchers.filter((w) => this.#arrivals >= w.count)) {
      this.#watchers.splice(this.#watchers.indexOf(w), 1);
      w.resolve();
    }
    if (this.#open) return;
    await new Promise<void>((resolve) => this.#waiting.push(resolve));
  }

  arrived(count = 1): Promise<void> {
    if (this.#arrivals >= count) return Promise.resolve();
    return new Promise((resolve) => this.#watchers.push({ count, resolve }));
  }

  release(): void {
    this.#open = true;
    for (const resolve of this.#waiting.splice(0)) resolve();
  }
}

/** A list-then-watch over the fake's objects of one kind, filtered as its selectors would. */
class FakeWatch<T> implements ObjectWatch<T> {
  readonly description: string;
  readonly #source: WatchSource<T>;
  readonly #handlers = {
    add: [] as ((obj: T) => void)[],
    update: [] as ((obj: T) => void)[],
    delete: [] as ((obj: T) => void)[],
    error: [] as ((err?: unknown) => void)[],
  };
  readonly #cache = new Map<string, Stored>();
  #running = false;

  constructor(description: string, source: WatchSource<T>) {
    this.description = description;
    this.#source = source;
  }

  on(event: 'add' | 'update' | 'delete', callback: (obj: T) => void): void;
  on(event: 'error', callback: (err?: unknown) => void): void;
  on(
    event: 'add' | 'update' | 'delete' | 'error',
    callback: ((obj: T) => void) & ((err?: unknown) => void),
  ): void {
    this.#handlers[event].push(callback);
  }

  async start(): Promise<void> {
    const items = (await this.#source.list()).filter((o) => this.#source.matches(o));
    // As ListWatch after a list: adds, updates of changed versions, deletions of what is gone.
    const listed = new Set<string>();
    for (const item of items) {
      const id = idOf(item.metadata.namespace, item.metadata.name);
      listed.add(id);
      const cached = this.#cache.get(id);
      this.#cache.set(id, item);
      if (cached === undefined) this.#emit('add', item);
      else if (cached.metadata.resourceVersion !== item.metadata.resourceVersion) {
        this.#emit('update', item);
      }
    }
    for (const [id, cached] of [...this.#cache]) {
      if (listed.has(id)) continue;
      this.#cache.delete(id);
      this.#emit('delete', cached);
    }
    this.#running = true;
    this.#source.attach((before, after) => {
      this.#changed(before, after);
    }, this);
  }

  stop(): Promise<void> {
    this.#running = false;
    this.#source.detach(this);
    return Promise.resolve();
  }

  /** Ends the watch with an error, as a dropped connection does; the cache stays. */
  fail(err: unknown): void {
    if (!this.#running) return;
    void this.stop();
    for (const cb of this.#handlers.error) cb(err);
  }

  list(): readonly T[] {
    return [...this.#cache.values()].map((o) => copy(o) as T);
  }

  get(name: string, namespace?: string): T | undefined {
    const found = this.#cache.get(idOf(namespace, name));
    return found === undefined ? undefined : (copy(found) as T);
  }

  #changed(before: Stored | undefined, after: Stored | undefined): void {
    if (!this.#running) return;
    const was = before !== undefined && this.#source.matches(before);
    const is = after !== undefined && this.#source.matches(after);
    if (is && after !== undefined) {
      this.#cache.set(idOf(after.metadata.namespace, after.metadata.name), after);
      this.#emit(was ? 'update' : 'add', after);
    } else if (was && before !== undefined) {
      this.#cache.delete(idOf(before.metadata.namespace, before.metadata.name));
      this.#emit('delete', before);
    }
  }

  #emit(type: 'add' | 'update' | 'delete', obj: Stored): void {
    for (const cb of this.#handlers[type]) cb(copy(obj) as T);
  }
}

/** The Kubernetes API, in memory. */
export class FakeKubeApi implements KubeApi {
  /** Every call, in order (a watch's list counts as a call of `sinkWatch` or `secretWatch`). */
  readonly calls: { readonly op: Operation; readonly args: readonly unknown[] }[] = [];
  /** Every Event created, in order. */
  readonly events: RecordedEvent[] = [];
  /** Whether `auditregistration.k8s.io/v1alpha1` is served (an apiserver of 1.13 to 1.18). */
  servesNative = false;
  #resourceVersion = 1000;
  #uids = 0;
  readonly #objects = new Map<StoredKind, Map<string, Stored>>();
  readonly #listeners = new Map<FakeWatch<unknown>, { kind: StoredKind; listener: Listener }>();
  readonly #failures = new Map<Operation, Error[]>();
  readonly #forbidden = new Set<Operation>();
  readonly #gates = new Map<Operation, GateImpl>();
  readonly #tokens = new Map<string, ReviewedUser>();
  readonly #grants = new Set<string>();

  // ---- The test's side: what a user or another client does.

  /**
   * Creates or updates an object as `kubectl apply` would: a new one gets a uid and generation 1;
   * a changed spec bumps the generation; status is kept (it has its own subresource); a Secret's
   * `stringData` is stored base64-encoded in `data`.
   */
  put(kind: StoredKind, object: object): Stored {
    const obj = copy(object) as Stored;
    const namespace = CLUSTER_SCOPED.has(kind) ? undefined : obj.metadata.namespace;
    const id = idOf(namespace, obj.metadata.name);
    const before = this.#store(kind).get(id);
    if (kind === 'Secret' && obj.stringData !== undefined) {
      const encoded = Object.entries(obj.stringData).map(([k, v]) => [
        k,
        Buffer.from(v).toString('base64'),
      ]);
      obj.data = { ...obj.data, ...Object.fromEntries(encoded) };
      delete obj.stringData;
    }
    const sinkKind = kind === 'AuditSink' || kind === 'AuditPipeline';
    const specChanged = JSON.stringify(before?.spec) !== JSON.stringify(obj.spec);
    const generation = before?.metadata.generation ?? 0;
    const stored: Stored = {
      ...obj,
      metadata: {
        ...obj.metadata,
        ...(namespace === undefined ? {} : { namespace }),
        uid: before?.metadata.uid ?? this.#newUid(),
        resourceVersion: this.#nextVersion(),
        ...(sinkKind ? { generation: specChanged ? generation + 1 : generation } : {}),
      },
      ...(sinkKind && before?.status !== undefined ? { status: before.status } : {}),
    };
    if (sinkKind && before === undefined) delete stored.status;
    this.#write(kind, id, before, stored);
    return copy(stored);
  }

  /** Deletes an object; false when there was none. */
  remove(kind: StoredKind, namespace: string, name: string): boolean {
    const id = idOf(CLUSTER_SCOPED.has(kind) ? undefined : namespace, name);
    const before = this.#store(kind).get(id);
    if (before === undefined) return false;
    this.#write(kind, id, before, undefined);
    return true;
  }

  /**
   * Deletes every object whose owners (`metadata.ownerReferences`, by uid) are all gone, as the
   * kube-controller-manager's garbage collector does some time after an owner is deleted; returns
   * `kind/namespace/name` of each deleted.
   */
  collectGarbage(): string[] {
    const uids = new Set<string>();
    for (const store of this.#objects.values()) {
      for (const o of store.values()) if (o.metadata.uid !== undefined) uids.add(o.metadata.uid);
    }
    const deleted: string[] = [];
    for (const [kind, store] of this.#objects) {
      for (const [id, o] of [...store]) {
        const owners = o.metadata.ownerReferences;
        if (owners === undefined || owners.length === 0) continue;
        if (owners.some((r) => uids.has(r.uid))) continue;
        this.#write(kind, id, o, undefined);
        deleted.push(`${kind}/${id}`);
      }
    }
    return deleted.sort();
  }

  /** An object as stored now. */
  get(kind: StoredKind, namespace: string, name: string): Stored | undefined {
    return copy(
      this.#store(kind).get(idOf(CLUSTER_SCOPED.has(kind) ? undefined : namespace, name)),
    );
  }

  /** Every object of a kind, by namespace and name. */
  list(kind: StoredKind): Stored[] {
    return [...this.#store(kind).values()]
      .map((o) => copy(o))
      .sort((a, b) =>
        idOf(a.metadata.namespace, a.metadata.name).localeCompare(
          idOf(b.metadata.namespace, b.metadata.name),
        ),
      );
  }

  /** The watches running now, e.g. `AuditPipeline` or `Secret shop/influx-token`, sorted. */
  watching(): string[] {
    return [...this.#listeners.keys()].map((w) => w.description).sort();
  }

  /** Ends every running watch of `kind` with an error, as a dropped connection does. */
  dropWatches(kind: StoredKind, err: unknown = new Error('watch closed: connection reset')): void {
    for (const [watch, entry] of [...this.#listeners]) {
      if (entry.kind === kind) watch.fail(err);
    }
  }

  /** Makes the next `times` calls of `op` fail with `err` (by default a 500). */
  failNext(op: Operation, err: Error = serverError(), times = 1): void {
    const queued = this.#failures.get(op) ?? [];
    for (let i = 0; i < times; i++) queued.push(err);
    this.#failures.set(op, queued);
  }

  /** Answers every call of `op` with 403 until {@link allow}. */
  forbid(op: Operation): void {
    this.#forbidden.add(op);
  }

  /** Ends {@link forbid}. */
  allow(op: Operation): void {
    this.#forbidden.delete(op);
  }

  /** Holds every call of `op` until the gate is released. */
  hold(op: Operation): Gate {
    const gate = new GateImpl();
    this.#gates.set(op, gate);
    return gate;
  }

  /** How many times `op` was called. */
  count(op: Operation): number {
    return this.calls.filter((c) => c.op === op).length;
  }

  /** A bearer token the TokenReview knows, and the non-resource URLs its user may read. */
  addUser(token: string, user: ReviewedUser, grants: readonly { path: string; verb: string }[]) {
    this.#tokens.set(token, copy(user));
    for (const g of grants) this.#grants.add(`user:${user.username} ${g.verb} ${g.path}`);
  }

  /** Lets every member of `group` `verb` the non-resource URL `path`, as a ClusterRoleBinding. */
  grantGroup(group: string, path: string, verb: string): void {
    this.#grants.add(`group:${group} ${verb} ${path}`);
  }

  // ---- KubeApi: what the operator calls.

  sinkWatch(kind: SinkKind): ObjectWatch<KubeObject> {
    return this.#watch<KubeObject>(kind, kind, 'sinkWatch', [kind], () => true);
  }

  async listSinkResources(kind: SinkKind): Promise<KubeObject[]> {
    await this.#enter('listSinkResources', [kind]);
    return this.list(kind);
  }

  async patchStatus(
    kind: SinkKind,
    namespace: string,
    name: string,
    status: unknown,
  ): Promise<void> {
    await this.#enter('patchStatus', [kind, namespace, name, status]);
    const id = idOf(kind === 'AuditSink' ? undefined : namespace, name);
    const before = this.#store(kind).get(id);
    if (before === undefined) throw notFound(`${kind} ${id}`);
    const after: Stored = {
      ...before,
      status: mergePatch(before.status, copy(status)),
      metadata: { ...before.metadata, resourceVersion: this.#nextVersion() },
    };
    this.#write(kind, id, before, after);
  }

  secretWatch(namespace: string, name: string): ObjectWatch<SecretObject> {
    return this.#watch<SecretObject>(
      'Secret',
      `Secret ${namespace}/${name}`,
      'secretWatch',
      [namespace, name],
      (o) =>
        o.metadata.namespace === namespace &&
        o.metadata.name === name &&
        o.metadata.labels?.[SECRET_OPT_IN_LABEL] === 'true',
    );
  }

  async createEvent(event: EventRecord, component: string, now: Date): Promise<void> {
    await this.#enter('createEvent', [event, component, now]);
    const namespace = event.involved.namespace === '' ? 'default' : event.involved.namespace;
    this.events.push({ ...copy(event), namespace, component, time: new Date(now) });
  }

  async readLease(namespace: string, name: string): Promise<Lease | undefined> {
    await this.#enter('readLease', [namespace, name]);
    return this.get('Lease', namespace, name) as Lease | undefined;
  }

  async createLease(lease: Lease): Promise<Lease> {
    await this.#enter('createLease', [lease]);
    return this.#create('Lease', lease) as Lease;
  }

  async replaceLease(lease: Lease): Promise<Lease> {
    await this.#enter('replaceLease', [lease]);
    return this.#replace('Lease', lease) as Lease;
  }

  async listConfigMaps(namespace: string, labelSelector: string): Promise<ConfigMapObject[]> {
    await this.#enter('listConfigMaps', [namespace, labelSelector]);
    return this.list('ConfigMap').filter(
      (o) => o.metadata.namespace === namespace && selects(labelSelector, o.metadata.labels),
    ) as ConfigMapObject[];
  }

  async createConfigMap(body: ConfigMapObject): Promise<ConfigMapObject> {
    await this.#enter('createConfigMap', [body]);
    return this.#create('ConfigMap', body) as ConfigMapObject;
  }

  async replaceConfigMap(body: ConfigMapObject): Promise<ConfigMapObject> {
    await this.#enter('replaceConfigMap', [body]);
    return this.#replace('ConfigMap', body) as ConfigMapObject;
  }

  async servesNativeAuditSinks(): Promise<boolean> {
    await this.#enter('servesNativeAuditSinks', []);
    return this.servesNative;
  }

  async listNativeSinks(labelSelector: string): Promise<KubeObject[]> {
    await this.#enter('listNativeSinks', [labelSelector]);
    this.#requireNative();
    return this.list('NativeAuditSink').filter((o) => selects(labelSelector, o.metadata.labels));
  }

  async applyNativeSink(body: KubeObject, existing: KubeObject | undefined): Promise<void> {
    await this.#enter('applyNativeSink', [body, existing]);
    this.#requireNative();
    if (existing === undefined) {
      this.#create('NativeAuditSink', body);
      return;
    }
    const version = existing.metadata?.resourceVersion;
    this.#replace('NativeAuditSink', {
      ...body,
      metadata: {
        ...body.metadata,
        ...(version === undefined ? {} : { resourceVersion: version }),
      },
    });
  }

  async deleteNativeSink(name: string): Promise<void> {
    await this.#enter('deleteNativeSink', [name]);
    this.#requireNative();
    this.remove('NativeAuditSink', '', name);
  }

  async reviewToken(token: string): Promise<ReviewedUser | undefined> {
    await this.#enter('reviewToken', ['[token]']);
    return copy(this.#tokens.get(token));
  }

  async reviewNonResourceAccess(user: ReviewedUser, path: string, verb: string): Promise<boolean> {
    await this.#enter('reviewNonResourceAccess', [user, path, verb]);
    const subjects = [`user:${user.username}`, ...(user.groups ?? []).map((g) => `group:${g}`)];
    return subjects.some((subject) => this.#grants.has(`${subject} ${verb} ${path}`));
  }

  // ---- The apiserver's side.

  // Every call: recorded, held while its gate is closed, then refused if the test says so.
  async #enter(op: Operation, args: readonly unknown[]): Promise<void> {
    this.calls.push({ op, args: copy(args) });
    await Promise.resolve();
    await this.#gates.get(op)?.pass();
    if (this.#forbidden.has(op)) throw forbidden(op);
    const failure = this.#failures.get(op)?.shift();
    if (failure !== undefined) throw failure;
  }

  #watch<T>(
    kind: StoredKind,
    description: string,
    op: Operation,
    args: readonly unknown[],
    matches: (obj: Stored) => boolean,
  ): ObjectWatch<T> {
    return new FakeWatch<T>(description, {
      list: async () => {
        await this.#enter(op, args);
        return this.list(kind);
      },
      attach: (listener, watch) => {
        this.#listeners.set(watch as FakeWatch<unknown>, { kind, listener });
      },
      detach: (watch) => {
        this.#listeners.delete(watch as FakeWatch<unknown>);
      },
      matches,
    });
  }

  #create(kind: StoredKind, body: { metadata?: ObjectMeta }): Stored {
    const obj = copy(body) as Stored;
    const { name } = obj.metadata;
    const namespace = CLUSTER_SCOPED.has(kind) ? undefined : obj.metadata.namespace;
    if (obj.metadata.resourceVersion !== undefined) {
      throw apiError(
        500,
        'InternalError',
        'resourceVersion should not be set on objects to be created',
      );
    }
    const id = idOf(namespace, name);
    if (this.#store(kind).has(id)) {
      throw apiError(409, 'AlreadyExists', `${kind} "${name}" already exists`);
    }
    const stored: Stored = {
      ...obj,
      metadata: { ...obj.metadata, uid: this.#newUid(), resourceVersion: this.#nextVersion() },
    };
    this.#write(kind, id, undefined, stored);
    return copy(stored);
  }

  // PUT: compare-and-swap when the body names a resourceVersion, unconditional otherwise.
  #replace(kind: StoredKind, body: { metadata?: ObjectMeta }): Stored {
    const obj = copy(body) as Stored;
    const { name, resourceVersion } = obj.metadata;
    const namespace = CLUSTER_SCOPED.has(kind) ? undefined : obj.metadata.namespace;
    const id = idOf(namespace, name);
    const before = this.#store(kind).get(id);
    if (before === undefined) throw notFound(`${kind} ${id}`);
    if (resourceVersion !== undefined && resourceVersion !== before.metadata.resourceVersion) {
      throw conflict(`${kind} "${name}"`);
    }
    const stored: Stored = {
      ...obj,
      metadata: {
        ...obj.metadata,
        uid: before.metadata.uid ?? this.#newUid(),
        resourceVersion: this.#nextVersion(),
      },
    };
    this.#write(kind, id, before, stored);
    return copy(stored);
  }

  #write(kind: StoredKind, id: string, before: Stored | undefined, after: Stored | undefined) {
    if (after === undefined) this.#store(kind).delete(id);
    else this.#store(kind).set(id, after);
    for (const entry of [...this.#listeners.values()]) {
      if (entry.kind === kind) entry.listener(before, after);
    }
  }

  #requireNative(): void {
    if (!this.servesNative) {
      throw notFound('the server could not find the requested resource');
    }
  }

  #store(kind: StoredKind): Map<string, Stored> {
    let store = this.#objects.get(kind);
    if (store === undefined) {
      store = new Map();
      this.#objects.set(kind, store);
    }
    return store;
  }

  #nextVersion(): string {
    return String(++this.#resourceVersion);
  }

  #newUid(): string {
    this.#uids++;
    return `00000000-0000-4000-8000-${String(this.#uids).padStart(12, '0')}`;
  }
}
