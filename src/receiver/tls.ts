/**
 * The serving certificate, key and client CA: read from files, checked before use, and swapped into
 * a running server without a restart when the files change.
 */
import { X509Certificate } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { createSecureContext, type SecureContextOptions, type Server as TlsServer } from 'node:tls';
import { CertificateError } from './errors.ts';
import type { ReceiverTlsFiles } from './options.ts';
import type { ReceiverLogger } from './types.ts';

/** The PEM contents of a {@link ReceiverTlsFiles}. */
export interface TlsMaterial {
  readonly cert: Buffer;
  readonly key: Buffer;
  readonly ca?: Buffer;
}

/**
 * Reads the files and checks that they form a usable context (the key matches the certificate, the
 * CA parses), so that a broken set is refused before it replaces a working one.
 *
 * @throws CertificateError naming the file or the mismatch.
 */
export async function loadTlsMaterial(files: ReceiverTlsFiles): Promise<TlsMaterial> {
  const [cert, key, ca] = await Promise.all([
    read(files.certFile, 'certificate'),
    read(files.keyFile, 'key'),
    files.clientCAFile === undefined ? undefined : read(files.clientCAFile, 'client CA'),
  ]);
  const material: TlsMaterial = ca === undefined ? { cert, key } : { cert, key, ca };
  try {
    createSecureContext(material);
  } catch (err) {
    // OpenSSL's reasons ("key values mismatch", "no start line") name no key material.
    throw new CertificateError(
      `${files.certFile}, ${files.keyFile}${files.clientCAFile === undefined ? '' : `, ${files.clientCAFile}`}: unusable: ${(err as Error).message}`,
      { cause: err },
    );
  }
  return material;
}

/** Server options that ask for a client certificate only when a client CA is configured. */
export function tlsServerOptions(material: TlsMaterial): SecureContextOptions & {
  requestCert: boolean;
  rejectUnauthorized: boolean;
} {
  return {
    ...material,
    // Ask for, but do not require, a certificate: a client with a bearer token only must still
    // complete the handshake; each request checks `socket.authorized` instead.
    requestCert: material.ca !== undefined,
    rejectUnauthorized: false,
  };
}

/** SHA-256 fingerprint of a PEM certificate, as operators compare them (`AB:CD:...`). */
export function fingerprint(cert: Buffer): string {
  return new X509Certificate(cert).fingerprint256;
}

async function read(path: string, what: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (err) {
    throw new CertificateError(`${path}: cannot read the ${what} file (${errnoCode(err)})`, {
      cause: err,
    });
  }
}

/** Swaps certificates into a running TLS server, on demand and when the files change. */
export class CertificateReloader {
  readonly #server: TlsServer;
  readonly #files: ReceiverTlsFiles;
  readonly #log: ReceiverLogger | undefined;
  #signature: string;
  #lastFailure = '';
  #queue: Promise<void> = Promise.resolve();
  #timer: NodeJS.Timeout | undefined;

  /** `signature` describes the files the server was started with (see {@link filesSignature}). */
  constructor(server: TlsServer, files: ReceiverTlsFiles, signature: string, log?: ReceiverLogger) {
    this.#server = server;
    this.#files = files;
    this.#signature = signature;
    this.#log = log;
  }

  /**
   * Re-reads the files and serves them from the next handshake on; connections already open keep
   * the certificate they negotiated. Calls run one at a time.
   *
   * @throws CertificateError, keeping the current certificates.
   */
  reload(): Promise<void> {
    const run = this.#queue.then(() => this.#reload());
    // The queue must survive a failed reload; the caller still sees the failure through `run`.
    this.#queue = run.catch(() => undefined);
    return run;
  }

  /**
   * Polls the files every `intervalMs`. Polling rather than fs.watch: Kubernetes updates a mounted
   * Secret by swapping a `..data` symlink, which an inode watch on the old file never sees.
   */
  watch(intervalMs: number): void {
    if (intervalMs <= 0 || this.#timer !== undefined) return;
    this.#timer = setInterval(() => void this.#check(), intervalMs);
    // Watching must never keep the process alive on its own.
    this.#timer.unref();
  }

  /** Stops polling. */
  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  async #check(): Promise<void> {
    let signature: string;
    try {
      signature = await filesSignature(this.#files);
    } catch (err) {
      // A file missing mid-swap: try again next time, report once.
      this.#report(err);
      return;
    }
    if (signature === this.#signature) return;
    // A failed reload leaves the old signature, so the next check tries again: a certificate and
    // key written one after the other become consistent a moment later.
    await this.reload().catch(() => undefined);
  }

  async #reload(): Promise<void> {
    try {
      // Signature before contents: a change during the read shows up at the next check.
      const signature = await filesSignature(this.#files);
      const material = await loadTlsMaterial(this.#files);
      this.#server.setSecureContext(material);
      this.#signature = signature;
      this.#lastFailure = '';
      this.#log?.(
        'info',
        { certFile: this.#files.certFile, fingerprint256: fingerprint(material.cert) },
        'serving certificate reloaded',
      );
    } catch (err) {
      this.#report(err);
      throw err instanceof CertificateError
        ? err
        : new CertificateError(`certificate reload failed: ${(err as Error).message}`, {
            cause: err,
          });
    }
  }

  // Once per distinct failure: a broken Secret would otherwise log on every poll.
  #report(err: unknown): void {
    const message = err instanceof Error ? err.message : String(err);
    if (message === this.#lastFailure) return;
    this.#lastFailure = message;
    this.#log?.(
      'error',
      { err, certFile: this.#files.certFile },
      'certificate reload failed; serving the previous certificate',
    );
  }
}

/**
 * A string that changes whenever one of the files is replaced or rewritten (inode, size, mtime).
 *
 * @throws CertificateError when a file cannot be found.
 */
export async function filesSignature(files: ReceiverTlsFiles): Promise<string> {
  const paths = [
    files.certFile,
    files.keyFile,
    ...(files.clientCAFile === undefined ? [] : [files.clientCAFile]),
  ];
  const stats = await Promise.all(
    paths.map(async (path) => {
      try {
        return await stat(path, { bigint: true });
      } catch (err) {
        throw new CertificateError(`${path}: cannot read the file (${errnoCode(err)})`, {
          cause: err,
        });
      }
    }),
  );
  return stats.map((s) => `${s.ino}:${s.size}:${s.mtimeNs}`).join('|');
}

function errnoCode(err: unknown): string {
  return (err as NodeJS.ErrnoException).code ?? 'error';
}
