/** A failure the CLI reports as one clear message and an exit code, never a stack trace. */
export class CliError extends Error {
  override readonly name = 'CliError';
  /** Process exit code: 1 for bad input or failed checks, 2 for usage errors. */
  readonly exitCode: number;

  constructor(message: string, exitCode = 1, options?: ErrorOptions) {
    super(message, options);
    this.exitCode = exitCode;
  }
}
