// ReusedBuffer: one buffer handed out again, up to a size. Pure; starts no process.
import { describe, expect, it } from 'vitest';
import { ReusedBuffer } from '../../../src/audit/reused-buffer.ts';

describe('ReusedBuffer', () => {
  it('hands out views of one buffer, growing it by doubling up to its limit', () => {
    const reused = new ReusedBuffer(1000);
    const first = reused.take(100);
    expect(first.length).toBe(100);
    expect(reused.take(60).buffer).toBe(first.buffer);
    // Past what it holds: at least twice as much, so that slowly growing sizes rarely allocate.
    const grown = reused.take(150);
    expect(grown.length).toBe(150);
    expect(grown.buffer).not.toBe(first.buffer);
    expect(reused.bytes).toBe(200);
    expect(reused.take(200).buffer).toBe(grown.buffer);
    // Never past the limit.
    reused.take(900);
    expect(reused.bytes).toBe(900);
    reused.take(1000);
    expect(reused.bytes).toBe(1000);
  });

  it('gives a size above its limit a buffer of its own and keeps what it holds', () => {
    const reused = new ReusedBuffer(1000);
    const kept = reused.take(500);
    const own = reused.take(1001);
    expect(own.length).toBe(1001);
    expect(own.buffer).not.toBe(kept.buffer);
    expect(reused.bytes).toBe(500);
    expect(reused.take(10).buffer).toBe(kept.buffer);
  });
});
