/**
 * A fault-injecting TCP proxy for tests: listens on 127.0.0.1 (a free port) and forwards every
 * connection to a real server, unless told to slow it down, hold it, reset it, refuse it, answer
 * in the server's place with an HTTP error, or cut the server's answers. It stands in front of a
 * real server as a bad network or a broken load balancer would; it never imitates the server.
 *
 * Starts no process; every socket it opens is closed by {@link FaultyProxy.close}.
 */
import { STATUS_CODES } from 'node:http';
import { connect, createServer, type Server, type Socket } from 'node:net';

/** What the proxy does with connections, from now on. */
export type ProxyMode =
  /** Forwards both directions, subject to the throttles. */
  | { readonly kind: 'forward' }
  /** Accepts connections and holds every byte, both directions, until the mode changes. */
  | { readonly kind: 'hold' }
  /** Resets open connections, and every new one as soon as it is accepted. */
  | { readonly kind: 'reset' }
  /** Stops listening and resets open connections: connecting fails with ECONNREFUSED. */
  | { readonly kind: 'refuse' }
  /**
   * Answers every HTTP request with `status` (and `headers`) without forwarding it, then closes
   * the connection: a gateway in front of a failing server. Open connections are closed first.
   */
  | {
      readonly kind: 'answer';
      readonly status: number;
      readonly headers?: Readonly<Record<string, string>>;
    }
  /**
   * Forwards requests, but resets the connection as soon as the server's answer begins: the
   * server did the work, the client never hears of it. After `count` cuts (all of them when
   * absent) the proxy forwards again.
   */
  | { readonly kind: 'cut'; readonly count?: number };

/** A slowdown of one direction. */
export interface Throttle {
  /** Added before each chunk is forwarded. */
  readonly delayMs?: number;
  /** Bytes per second for all connections together; absent: unlimited. */
  readonly bytesPerSecond?: number;
}

/** What the proxy has done so far. */
export interface ProxyStats {
  readonly connections: number;
  /** Connections reset or refused by `reset` and `refuse`. */
  readonly reset: number;
  /** Requests answered by `answer`. */
  readonly answered: number;
  /** Answers cut by `cut`. */
  readonly cut: number;
  /** Bytes forwarded to the server. */
  readonly bytesUp: number;
  /** Bytes forwarded to the client. */
  readonly bytesDown: number;
}

/** A running proxy; see {@link startFaultyProxy}. */
export interface FaultyProxy {
  /** `http://127.0.0.1:<port>`; stays the same across `refuse` and back. */
  readonly url: string;
  readonly port: number;
  readonly stats: ProxyStats;
  /** Switches the mode; resolves once it applies (listening again after `refuse`). */
  set(mode: ProxyMode): Promise<void>;
  /** Slows requests (`up`, to the server) and answers (`down`); `{}` removes a throttle. */
  throttle(up: Throttle, down?: Throttle): void;
  /** Closes the listener and every connection. */
  close(): Promise<void>;
}

/** Chunks are forwarded in slices of at most this size under a bandwidth limit, for a smooth rate. */
const SLICE_BYTES = 8 * 1024;

type Direction = 'up' | 'down';

interface Connection {
  readonly client: Socket;
  upstream: Socket | undefined;
}

/** A shared budget of bytes per second: each slice waits until its bytes have "gone through". */
class RateLimit {
  #nextFree = 0;

  async take(bytes: number, bytesPerSecond: number): Promise<void> {
    const now = performance.now();
    const start = Math.max(now, this.#nextFree);
    this.#nextFree = start + (bytes / bytesPerSecond) * 1000;
    const wait = this.#nextFree - now;
    if (wait > 1) await sleep(wait);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Starts a proxy to `target` (a server on 127.0.0.1) in `forward` mode. */
export async function startFaultyProxy(target: { readonly port: number }): Promise<FaultyProxy> {
  const connections = new Set<Connection>();
  const stats = { connections: 0, reset: 0, answered: 0, cut: 0, bytesUp: 0, bytesDown: 0 };
  const throttles: Record<Direction, Throttle> = { up: {}, down: {} };
  const limits: Record<Direction, RateLimit> = { up: new RateLimit(), down: new RateLimit() };
  let mode: ProxyMode = { kind: 'forward' };
  let cutsLeft = Infinity;
  // Resolved (and replaced) at every mode change: what held pumps wait for.
  let changed: { promise: Promise<void>; resolve: () => void } = Promise.withResolvers<void>();
  let closed = false;

  const destroy = (conn: Connection, reset: boolean): void => {
    connections.delete(conn);
    if (reset && !conn.client.destroyed) conn.client.resetAndDestroy();
    else conn.client.destroy();
    conn.upstream?.destroy();
  };

  /** Waits out `hold` and the throttle; false when the chunk must not be forwarded. */
  const gate = async (conn: Connection, direction: Direction, bytes: number): Promise<boolean> => {
    for (;;) {
      if (!connections.has(conn)) return false;
      if (mode.kind === 'hold') {
        await changed.promise;
        continue;
      }
      if (mode.kind === 'cut' && direction === 'down') {
        stats.cut++;
        cutsLeft--;
        destroy(conn, true);
        if (cutsLeft <= 0) apply({ kind: 'forward' });
        return false;
      }
      break;
    }
    const throttle = throttles[direction];
    if (throttle.delayMs !== undefined && throttle.delayMs > 0) await sleep(throttle.delayMs);
    if (throttle.bytesPerSecond !== undefined) {
      await limits[direction].take(bytes, throttle.bytesPerSecond);
    }
    return connections.has(conn);
  };

  const pump = async (conn: Connection, from: Socket, to: Socket, direction: Direction) => {
    try {
      for await (const chunk of from as AsyncIterable<Buffer>) {
        const step = throttles[direction].bytesPerSecond === undefined ? chunk.length : SLICE_BYTES;
        for (let at = 0; at < chunk.length; at += step) {
          const slice = chunk.subarray(at, at + step);
          if (!(await gate(conn, direction, slice.length))) return;
          if (direction === 'up') stats.bytesUp += slice.length;
          else stats.bytesDown += slice.length;
          if (!to.write(slice)) {
            await new Promise<void>((resolve) => {
              const done = () => {
                to.off('drain', done);
                to.off('close', done);
                resolve();
              };
              to.on('drain', done);
              to.on('close', done);
            });
          }
        }
      }
      // The sender finished cleanly: pass the end on once everything before it went through.
      if (connections.has(conn)) to.end();
    } catch {
      destroy(conn, false);
    }
  };

  /** Answers each complete request on `client` with the `answer` mode's status. */
  const answer = (client: Socket, status: number, headers: Readonly<Record<string, string>>) => {
    let pending = Buffer.alloc(0);
    client.on('data', (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk]);
      const head = pending.indexOf('\r\n\r\n');
      if (head < 0) return;
      const text = pending.subarray(0, head).toString('latin1');
      const length = Number(/\r\ncontent-length:\s*(\d+)/i.exec(text)?.[1] ?? 0);
      const chunked = /\r\ntransfer-encoding:\s*chunked/i.test(text);
      const complete = chunked
        ? pending.indexOf('\r\n0\r\n\r\n', head) >= 0
        : pending.length >= head + 4 + length;
      if (!complete) return;
      pending = Buffer.alloc(0);
      stats.answered++;
      const body = JSON.stringify({
        code: status >= 500 ? 'internal error' : 'too many requests',
        message: `answered ${status} by the test proxy`,
      });
      const extra = Object.entries(headers)
        .map(([k, v]) => `${k}: ${v}\r\n`)
        .join('');
      client.end(
        `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}\r\n` +
          `content-type: application/json; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\n` +
          `connection: close\r\n${extra}\r\n${body}`,
      );
    });
  };

  const server: Server = createServer((client) => {
    stats.connections++;
    client.on('error', () => undefined);
    if (closed || mode.kind === 'reset' || mode.kind === 'refuse') {
      stats.reset++;
      client.resetAndDestroy();
      return;
    }
    const conn: Connection = { client, upstream: undefined };
    connections.add(conn);
    client.once('close', () => destroy(conn, false));
    if (mode.kind === 'answer') {
      answer(client, mode.status, mode.headers ?? {});
      return;
    }
    const upstream = connect({ host: '127.0.0.1', port: target.port });
    conn.upstream = upstream;
    upstream.on('error', () => destroy(conn, false));
    // The server closing its side ends the answer direction once its last bytes went through.
    void pump(conn, client, upstream, 'up');
    void pump(conn, upstream, client, 'down');
  });

  const listen = (port: number) =>
    new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });

  await listen(0);
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;

  const apply = (next: ProxyMode): void => {
    mode = next;
    cutsLeft = next.kind === 'cut' ? (next.count ?? Infinity) : Infinity;
    const previous = changed;
    changed = Promise.withResolvers<void>();
    previous.resolve();
  };

  return {
    url: `http://127.0.0.1:${port}`,
    port,
    stats,
    async set(next) {
      const wasListening = server.listening;
      apply(next);
      if (next.kind === 'reset' || next.kind === 'refuse') {
        for (const conn of [...connections]) {
          stats.reset++;
          destroy(conn, true);
        }
      }
      if (next.kind === 'answer') {
        for (const conn of [...connections]) destroy(conn, false);
      }
      if (next.kind === 'refuse' && wasListening) {
        await new Promise<void>((resolve) => server.close(() => resolve()));
      } else if (next.kind !== 'refuse' && !wasListening && !closed) {
        // The port was ours a moment ago; another process taking it in between would be a bug
        // worth seeing, so no retry on another port.
        await listen(port);
      }
    },
    throttle(up, down = {}) {
      throttles.up = up;
      throttles.down = down;
    },
    async close() {
      closed = true;
      apply({ kind: 'forward' });
      for (const conn of [...connections]) destroy(conn, false);
      if (server.listening) await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
