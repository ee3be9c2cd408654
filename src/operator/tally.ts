/**
 * The leader's view of every replica's report (ADR 0013): one list of the slots and the totals
 * per status pass, liveness judged by when this replica saw a slot change (its own clock, as for
 * the Lease), gone incarnations folded into the totals (compare-and-swap), and each resource's
 * status summed from both.
 */
import type { Logger } from '../telemetry/logger.ts';
import { type Clock, systemClock } from './clock.ts';
import { type ConfigMapsApi, type OwnerReference, statusOf } from './kube.ts';
import {
  type ClusterSnapshot,
  EMPTY_TOTALS,
  foldTotals,
  type ReplicaReport,
  type ResourceIdentity,
  type Slot,
  type StatusTotals,
  sumResource,
} from './reports.ts';
import {
  listStatusParts,
  readReport,
  type StatusParts,
  statusPart,
  totalsName,
} from './reporter.ts';

/** What the tally needs. */
export interface TallyOptions {
  readonly api: ConfigMapsApi;
  readonly namespace: string;
  readonly lease: string;
  /** The process logger; the tally logs as `module: tally`. */
  readonly log: Logger;
  /** A slot not renewed for this long is taken for gone. */
  readonly expiryMs: number;
  /** This replica's own report as it is now: fresher than its slot. */
  readonly own: () => ReplicaReport;
  /** The Lease, once known: the owner of the totals (they go when it goes). */
  readonly owner?: () => OwnerReference | undefined;
  /** The local clock that liveness is judged by; the system's by default. */
  readonly clock?: Clock;
}

/** Sums for one status pass. */
export interface Tally {
  /** A resource's status across replicas; undefined when nothing counts it. */
  snapshot(resource: ResourceIdentity): ClusterSnapshot | undefined;
}

/** Reads, folds and sums the replicas' reports. */
export class ClusterTally {
  readonly #options: TallyOptions;
  readonly #log: Logger;
  readonly #clock: Clock;
  // Per slot: the resourceVersion last seen, and when (local clock, ms).
  readonly #observed = new Map<string, { readonly resourceVersion: string; readonly at: number }>();
  // Unreadable slots already logged, by name and resourceVersion: logged once each.
  readonly #unreadable = new Set<string>();

  constructor(options: TallyOptions) {
    this.#options = options;
    this.#log = options.log.child({ module: 'tally' });
    this.#clock = options.clock ?? systemClock;
  }

  /** Forgets liveness observations: a new leader gives every slot a full expiry from now. */
  reset(): void {
    this.#observed.clear();
  }

  /**
   * Lists slots and totals, folds gone incarnations into the totals (written only when they
   * change), and returns the sums. When the list fails (RBAC of an older release, say) the sums
   * are this replica's own, folding nothing: conditions stay current, and status counters hold
   * (they never go backwards) until the list works again.
   */
  async pass(resources: readonly ResourceIdentity[]): Promise<Tally> {
    const { api, namespace, lease, expiryMs } = this.#options;
    const log = this.#log;
    const now = this.#now();
    const own = { report: this.#options.own() };
    let parts: StatusParts;
    try {
      parts = await listStatusParts(api, namespace, lease, log);
    } catch (err) {
      log.warn({ err }, 'replica reports not listed; status shows this replica only');
      const alone: Slot[] = [
        { name: '', resourceVersion: '', report: own.report, observedAt: now },
      ];
      return {
        snapshot: (resource) => sumResource(resource, EMPTY_TOTALS, alone, now, expiryMs),
      };
    }
    const slots: Slot[] = [];
    const seen = new Set<string>();
    let ownListed = false;
    for (const object of parts.slots) {
      const { name } = object.metadata;
      const resourceVersion = object.metadata.resourceVersion ?? '';
      seen.add(name);
      const report = readReport(object);
      if (report === undefined) {
        const id = `${name}@${resourceVersion}`;
        if (!this.#unreadable.has(id)) {
          this.#unreadable.add(id);
          log.warn({ configMap: name }, 'replica report unreadable; left out of status');
        }
        continue;
      }
      // Its own slot: the report as it is now rather than as last written.
      const mine = report.incarnation === own.report.incarnation;
      ownListed ||= mine;
      slots.push({
        name,
        resourceVersion,
        report: mine ? own.report : report,
        observedAt: mine ? now : this.#observedAt(name, resourceVersion, now),
      });
    }
    for (const name of this.#observed.keys()) if (!seen.has(name)) this.#observed.delete(name);
    // Not yet in a slot (its first write failed, or its slot was lost): counted, never folded.
    if (!ownListed) {
      slots.push({ name: '', resourceVersion: '', report: own.report, observedAt: now });
    }

    let totals = parts.totals;
    const next = foldTotals(totals, slots, resources, now, expiryMs);
    if (JSON.stringify(next) !== JSON.stringify(totals)) {
      try {
        await this.#write(next, parts.totalsVersion);
        totals = next;
      } catch (err) {
        // 409: another leader (for a moment there can be two) wrote first; the next pass reads
        // theirs. Either way the sums below are right with the totals as listed.
        if (statusOf(err) !== 409) log.warn({ err }, 'status totals not written');
      }
    }
    return { snapshot: (resource) => sumResource(resource, totals, slots, now, expiryMs) };
  }

  async #write(totals: StatusTotals, resourceVersion: string | undefined): Promise<void> {
    const { api, namespace, lease } = this.#options;
    const body = statusPart(
      namespace,
      lease,
      totalsName(lease),
      'totals',
      JSON.stringify(totals),
      resourceVersion,
      this.#options.owner?.(),
    );
    if (resourceVersion === undefined) await api.createConfigMap(body);
    else await api.replaceConfigMap(body);
  }

  #observedAt(name: string, resourceVersion: string, now: number): number {
    const seen = this.#observed.get(name);
    if (seen?.resourceVersion === resourceVersion) return seen.at;
    this.#observed.set(name, { resourceVersion, at: now });
    return now;
  }

  #now(): number {
    return this.#clock.now();
  }
}
