// The slots that bound the requests in flight to one InfluxDB server: pure, no I/O.
import { describe, expect, it, vi } from 'vitest';
import {
  REQUESTS_PER_SERVER,
  RequestSlots,
  ServerSlots,
} from '../../../src/outputs/server-slots.ts';

/** Settles pending promise callbacks. */
const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

describe('RequestSlots', () => {
  it('grants up to its limit at once and queues the rest', async () => {
    const slots = new RequestSlots(2);
    const granted: number[] = [];
    const releases: (() => void)[] = [];
    for (let i = 0; i < 5; i++) {
      void slots.acquire().then((release) => {
        granted.push(i);
        releases.push(release);
      });
    }
    await settle();
    expect(granted).toEqual([0, 1]);
    expect([slots.busy, slots.waiting]).toEqual([2, 3]);
    releases[0]?.();
    await settle();
    expect(granted).toEqual([0, 1, 2]);
    expect([slots.busy, slots.waiting]).toEqual([2, 2]);
  });

  it('hands freed slots to the waiters in the order they came, never past the limit', async () => {
    const slots = new RequestSlots(3);
    let inFlight = 0;
    let most = 0;
    const order: number[] = [];
    const request = async (i: number) => {
      const release = await slots.acquire();
      order.push(i);
      inFlight++;
      most = Math.max(most, inFlight);
      // Shorter work for later requests: finishing order differs from arrival order.
      await new Promise((resolve) => setTimeout(resolve, 20 - i));
      inFlight--;
      release();
    };
    await Promise.all(Array.from({ length: 12 }, (_, i) => request(i)));
    expect(most).toBe(3);
    expect(order).toEqual(Array.from({ length: 12 }, (_, i) => i));
    expect([slots.busy, slots.waiting]).toEqual([0, 0]);
  });

  it('gives a slot back once, however often its release is called', async () => {
    const slots = new RequestSlots(1);
    const first = await slots.acquire();
    const second = slots.acquire();
    first();
    first();
    const release = await second;
    expect(slots.busy).toBe(1);
    const third = slots.acquire();
    await settle();
    expect(slots.waiting).toBe(1);
    release();
    (await third)();
    expect([slots.busy, slots.waiting]).toEqual([0, 0]);
  });

  it('rejects a wait whose signal aborts with its reason, and leaves the queue to the others', async () => {
    const slots = new RequestSlots(1);
    const held = await slots.acquire();
    const abort = new AbortController();
    const abandoned = slots.acquire(abort.signal);
    const next = slots.acquire();
    abort.abort(new Error('shutting down'));
    await expect(abandoned).rejects.toThrow('shutting down');
    expect(slots.waiting).toBe(1);
    held();
    (await next)();
    expect([slots.busy, slots.waiting]).toEqual([0, 0]);
  });

  it('rejects at once, holding nothing, when the signal has already aborted', async () => {
    const slots = new RequestSlots(1);
    await expect(slots.acquire(AbortSignal.abort(new Error('gone')))).rejects.toThrow('gone');
    expect([slots.busy, slots.waiting]).toEqual([0, 0]);
  });

  it('keeps a granted slot when its signal aborts afterwards', async () => {
    const slots = new RequestSlots(1);
    const abort = new AbortController();
    const release = await slots.acquire(abort.signal);
    abort.abort();
    expect(slots.busy).toBe(1);
    release();
    expect(slots.busy).toBe(0);
  });

  it('refuses a limit that is not a positive integer', () => {
    for (const limit of [0, -1, 1.5, Number.NaN]) {
      expect(() => new RequestSlots(limit)).toThrow(RangeError);
    }
  });
});

describe('waitedSeconds', () => {
  it('sums the time requests waited, granted or abandoned, and nothing for a free slot', async () => {
    vi.useFakeTimers({ toFake: ['performance'] });
    try {
      const slots = new RequestSlots(1);
      const held = await slots.acquire();
      const granted = slots.acquire();
      const abort = new AbortController();
      const abandoned = slots.acquire(abort.signal);
      vi.advanceTimersByTime(1_500);
      held();
      const release = await granted;
      vi.advanceTimersByTime(500);
      abort.abort(new Error('gone'));
      await expect(abandoned).rejects.toThrow('gone');
      expect(slots.waitedSeconds).toBeCloseTo(1.5 + 2, 6);
      release();
      (await slots.acquire())();
      expect(slots.waitedSeconds).toBeCloseTo(3.5, 6);
    } finally {
      vi.useRealTimers();
    }
  });
});

describe('ServerSlots', () => {
  it('shares one set of slots per server origin, whatever the path or user info', () => {
    const servers = new ServerSlots();
    const a = servers.for('http://influxdb.monitoring:8086');
    expect(servers.for('http://influxdb.monitoring:8086/')).toBe(a);
    expect(servers.for('http://influxdb.monitoring:8086/influx')).toBe(a);
    expect(servers.for('http://user:secret@influxdb.monitoring:8086')).toBe(a);
    expect(servers.for('https://influxdb.monitoring:8086')).not.toBe(a);
    expect(servers.for('http://influxdb.monitoring:8087')).not.toBe(a);
    expect(a.limit).toBe(REQUESTS_PER_SERVER);
  });

  it('gives each server the configured limit, and the process another set', async () => {
    const servers = new ServerSlots(1);
    const a = servers.for('http://a:8086');
    const b = servers.for('http://b:8086');
    expect([a.limit, b.limit]).toEqual([1, 1]);
    const held = await a.acquire();
    // Another server's slot is free; another ServerSlots does not share this one's.
    (await b.acquire())();
    (await new ServerSlots(1).for('http://a:8086').acquire())();
    held();
  });

  it('reports each server by origin, never with user info', async () => {
    const servers = new ServerSlots(1);
    const slots = servers.for('http://user:secret@influxdb:8086/base');
    const held = await slots.acquire();
    void slots.acquire();
    expect([...servers.load()]).toEqual([
      { server: 'http://influxdb:8086', inFlight: 1, waiting: 1, waitedSeconds: 0 },
    ]);
    held();
  });

  it('refuses a limit that is not a positive integer when made', () => {
    expect(() => new ServerSlots(0)).toThrow(RangeError);
  });

  it('allows 128 requests in flight per server by default', () => {
    // 128: measured with 1,000 sinks on one influxd (ADR 0008).
    expect(REQUESTS_PER_SERVER).toBe(128);
    expect(new ServerSlots().limit).toBe(128);
  });
});
