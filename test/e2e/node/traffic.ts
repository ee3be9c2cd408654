/**
 * Steady audit traffic: ConfigMaps created one after another at a fixed rate through the
 * kube-apiserver, as an admin (the kubeconfig's user), each create an audit event that the
 * apiserver posts to the receivers. Creates through @kubernetes/client-node rather than a kubectl
 * process per request, which would take a core of the two at a few requests a second. Starts
 * nothing but HTTPS requests.
 */
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';

/** What a stream did. */
export interface StreamResult {
  /** Names of the ConfigMaps the apiserver created (answered 201). */
  readonly created: readonly string[];
  /** Creates that failed, with why. */
  readonly failed: readonly string[];
}

/** ConfigMaps `<prefix>-<n>` in `namespace`, one every `intervalMs`, until stopped. */
export class ConfigMapStream {
  readonly #api: CoreV1Api;
  readonly #namespace: string;
  readonly #prefix: string;
  readonly #intervalMs: number;
  readonly #created: string[] = [];
  readonly #failed: string[] = [];
  #stopped = false;
  #loop: Promise<void> = Promise.resolve();

  constructor(kubeconfig: string, namespace: string, prefix: string, intervalMs = 250) {
    const kc = new KubeConfig();
    kc.loadFromFile(kubeconfig);
    this.#api = kc.makeApiClient(CoreV1Api);
    this.#namespace = namespace;
    this.#prefix = prefix;
    this.#intervalMs = intervalMs;
  }

  /** Starts creating. */
  start(): this {
    this.#loop = (async () => {
      for (let n = 0; !this.#stopped; n++) {
        const began = performance.now();
        const name = `${this.#prefix}-${n}`;
        try {
          await this.#api.createNamespacedConfigMap({
            namespace: this.#namespace,
            body: { metadata: { name }, data: { n: String(n) } },
          });
          this.#created.push(name);
        } catch (err) {
          this.#failed.push(`${name}: ${(err as Error).message.slice(0, 200)}`);
        }
        const wait = this.#intervalMs - (performance.now() - began);
        if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
      }
    })();
    return this;
  }

  /** How many creates have succeeded so far. */
  get count(): number {
    return this.#created.length;
  }

  /** Stops after the request under way; resolves with what was done. */
  async stop(): Promise<StreamResult> {
    this.#stopped = true;
    await this.#loop;
    return { created: [...this.#created], failed: [...this.#failed] };
  }
}
