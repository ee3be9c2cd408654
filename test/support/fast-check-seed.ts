/**
 * Setup file of every vitest project: property tests draw from one fixed seed, so a run does not
 * depend on the clock (fast-check seeds from it by default) and a failure in CI replays anywhere.
 * `FC_SEED=<integer>` explores other cases; `FC_SEED=random` draws a new seed and prints it.
 */
import fc from 'fast-check';

// A fixed seed; any integer does. Property failures print the seed that found them.
const DEFAULT_SEED = 20_261_202;

function seed(): number {
  const given = process.env.FC_SEED;
  if (given === undefined || given === '') return DEFAULT_SEED;
  if (given === 'random') {
    const drawn = Math.floor(Math.random() * 2 ** 31);
    console.log(`fast-check seed: ${drawn} (FC_SEED=${drawn} replays it)`);
    return drawn;
  }
  const parsed = Number(given);
  if (!Number.isInteger(parsed))
    throw new Error(`FC_SEED must be an integer or "random", not ${given}`);
  return parsed;
}

fc.configureGlobal({ ...fc.readConfigureGlobal(), seed: seed() });
