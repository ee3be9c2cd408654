// A sink's index of the log in memory: positions on disk and sequence numbers in memory map onto
// each other, sizes add up, releases keep a partly delivered record. Pure; starts no process.
import { describe, expect, it } from 'vitest';
import { eventStarts, StreamIndex, singleSelection } from '../../../src/spool/log/stream-index.ts';

/** An index with the stream's share of records 3 (3 events), 5 (2) and 9 (4), 10 bytes each. */
function index(): StreamIndex {
  const built = new StreamIndex();
  for (const [record, count] of [
    [3, 3],
    [5, 2],
    [9, 4],
  ] as const) {
    const selection = Uint32Array.from({ length: count }, (_, i) => i);
    built.add(record, selection, eventStarts(new Array(count).fill(10)));
  }
  return built;
}

describe('stream index', () => {
  it.each([
    [0, [3, 0]],
    [2, [3, 2]],
    [3, [5, 0]],
    [6, [9, 1]],
    [9, [9, 4]],
  ] as const)('stores sequence number %i as position %j and reads it back', (seq, position) => {
    const built = index();
    expect(built.positionOf(seq)).toEqual(position);
    expect(built.seqOf(position)).toBe(seq);
  });

  it.each([
    [[0, 0], 0],
    [[4, 0], 3],
    [[5, 7], 5],
    [[12, 0], 9],
  ] as const)('reads position %j, of a record it holds nothing of, as %i', (position, seq) => {
    expect(index().seqOf(position)).toBe(seq);
  });

  it('counts bytes between sequence numbers', () => {
    const built = index();
    expect(built.offsetOf(0)).toBe(0);
    expect(built.offsetOf(4)).toBe(40);
    expect(built.offsetOf(9)).toBe(90);
  });

  it('keeps a partly released record and pins it, then nothing once all is released', () => {
    const built = index();
    built.release(4);
    expect(built.start).toBe(4);
    expect(built.pin).toBe(5);
    expect(built.holds(0, 5)).toBe(false);
    expect(built.holds(5, 6)).toBe(true);
    expect(built.offsetOf(4)).toBe(40);
    built.release(9);
    expect(built.pin).toBe(Number.POSITIVE_INFINITY);
    expect(built.positionOf(9)).toEqual([9, 4]);
  });

  it('keeps sequence numbers and byte offsets when its events move to other records', () => {
    const built = index();
    built.release(4);
    const copy = (record: number, count: number) => ({
      record,
      selection: Uint32Array.from({ length: count }, (_, i) => i),
      starts: eventStarts(new Array(count).fill(10)),
    });
    // Events 4..8 (the partly released record 5 and record 9) copied into records 20 and 21.
    built.relocate(4, 40, [copy(20, 3), copy(21, 2)]);
    expect([built.start, built.end, built.pin]).toEqual([4, 9, 20]);
    expect(built.positionOf(4)).toEqual([20, 0]);
    expect(built.positionOf(7)).toEqual([21, 0]);
    expect(built.positionOf(9)).toEqual([21, 2]);
    expect(built.seqOf([21, 1])).toBe(8);
    expect(built.offsetOf(7)).toBe(70);
    expect(built.holds(0, 20)).toBe(false);
  });

  it('refuses a copy that does not end where the stream does', () => {
    const built = index();
    const selection = Uint32Array.from([0, 1]);
    const starts = eventStarts([10, 10]);
    expect(() => built.relocate(0, 0, [{ record: 20, selection, starts }])).toThrow(RangeError);
  });

  it('counts the bytes of scattered events from the record they share with other streams', () => {
    // One record of five events (sizes 1, 10, 100, 1000, 10000); two streams keep some of them.
    const starts = eventStarts([1, 10, 100, 1000, 10000]);
    const tenant = new StreamIndex();
    tenant.add(7, Uint32Array.from([0, 2, 4]), starts);
    expect([
      tenant.offsetOf(0),
      tenant.offsetOf(1),
      tenant.offsetOf(2),
      tenant.offsetOf(3),
    ]).toEqual([0, 1, 101, 10101]);
    const run = new StreamIndex();
    run.add(7, Uint32Array.from([1, 2, 3]), starts);
    run.add(8, Uint32Array.from([2]), starts);
    expect([run.offsetOf(1), run.offsetOf(2), run.offsetOf(3), run.offsetOf(4)]).toEqual([
      10, 110, 1110, 1210,
    ]);
    run.release(2);
    expect(run.retainedBytes).toBe(1100);
    expect(tenant.retainedBytes).toBe(10101);
  });

  it('keeps one instance of each single-event selection, whichever stream or record holds it', () => {
    const starts = eventStarts([5, 5, 5]);
    const a = new StreamIndex();
    const b = new StreamIndex();
    a.add(1, Uint32Array.of(2), starts);
    b.add(1, Uint32Array.of(2), starts);
    b.add(2, Uint32Array.of(2), starts);
    const selections = [a, b].flatMap((index) => index.retained().map((e) => e.selection));
    expect(new Set(selections).size).toBe(1);
    expect(selections[0]).toBe(singleSelection(2));
    expect([...singleSelection(2)]).toEqual([2]);
    expect(b.offsetOf(1)).toBe(5);
  });
});
