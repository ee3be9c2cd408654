/** The error a promise is expected to reject with, checked to be of its type. Starts nothing. */
import { expect } from 'vitest';

/** Awaits `promise`, expecting it to reject with an instance of `type`, and returns that error. */
export async function rejectionOf<T>(
  promise: Promise<unknown>,
  type: abstract new (...args: never[]) => T,
): Promise<T> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(type);
  return error as T;
}
