/**
 * A TCP load balancer for tests that balances per connection, as kube-proxy does for a Service:
 * each new connection goes to the next backend in turn (IPVS's `rr`; kube-proxy's iptables mode
 * picks one at random, also once per connection), and every byte of it follows. What it never
 * does is move a request: a client that keeps its connection stays on one backend.
 *
 * Listens on 127.0.0.1 (a free port). Starts no process; {@link RoundRobinProxy.close} closes every
 * socket it opened.
 */
import { connect, createServer, type Socket } from 'node:net';

/** Where connections go. */
export interface Backend {
  readonly host: string;
  readonly port: number;
}

/** A running proxy. */
export interface RoundRobinProxy {
  /** `http://127.0.0.1:<port>`. */
  readonly url: string;
  /** Connections handed to each backend so far, in the order of the backends. */
  readonly connections: readonly number[];
  /** Connections that ended with an error on either side (a reset, a refused backend). */
  readonly errors: number;
  /** Stops listening and closes every connection. */
  close(): Promise<void>;
}

/** Starts a proxy spreading connections over `backends` in turn. */
export async function startRoundRobinProxy(backends: readonly Backend[]): Promise<RoundRobinProxy> {
  if (backends.length === 0) throw new Error('a proxy needs at least one backend');
  const connections = backends.map(() => 0);
  const open = new Set<Socket>();
  let next = 0;
  let errors = 0;
  const server = createServer((client) => {
    const index = next;
    next = (next + 1) % backends.length;
    connections[index] = (connections[index] ?? 0) + 1;
    const backend = backends[index] as Backend;
    const upstream = connect({ host: backend.host, port: backend.port });
    for (const socket of [client, upstream]) {
      open.add(socket);
      socket.once('close', () => open.delete(socket));
      // Keep-alive connections wait for the next request: no delay on small writes either way.
      socket.setNoDelay(true);
    }
    let failed = false;
    const fail = () => {
      if (!failed) errors++;
      failed = true;
      // A reset on one side is passed on as a reset, as a NAT would.
      client.resetAndDestroy();
      upstream.resetAndDestroy();
    };
    client.on('error', fail);
    upstream.on('error', fail);
    // Half-closes pass through: the server's FIN after `Connection: close` reaches the client.
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('proxy has no port');
  return {
    url: `http://127.0.0.1:${address.port}`,
    get connections() {
      return [...connections];
    },
    get errors() {
      return errors;
    },
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const socket of open) socket.destroy();
      await closed;
    },
  };
}
