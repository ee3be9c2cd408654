/**
 * A throwaway certificate authority for tests: issues CA, server and client certificates and
 * plain keys with the `openssl` command-line tool into one directory.
 */
import { execFile } from 'node:child_process';
import { randomBytes, X509Certificate } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

// Our own configuration, so that no distribution's openssl.cnf defaults change the certificates.
const OPENSSL_CONF = `
[req]
distinguished_name = dn
prompt = no
[dn]
CN = placeholder
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1
authorityKeyIdentifier = keyid
[client]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
authorityKeyIdentifier = keyid
`;

/** A certificate and its key, as files and as PEM bytes. */
export interface Issued {
  readonly certFile: string;
  readonly keyFile: string;
  readonly cert: Buffer;
  readonly key: Buffer;
  readonly fingerprint: string;
}

/** Issues certificates with the openssl command-line tool into one directory. */
export class TestPki {
  readonly dir: string;
  readonly #conf: string;

  constructor(dir: string) {
    this.dir = dir;
    this.#conf = join(dir, 'openssl.cnf');
  }

  /** Writes the openssl configuration; call once before issuing. */
  async init(): Promise<void> {
    await writeFile(this.#conf, OPENSSL_CONF);
  }

  /** A self-signed CA named `name`, valid for two days. */
  async ca(name: string): Promise<Issued> {
    await this.#openssl([
      'req',
      '-x509',
      '-new',
      ...this.#newKey(name),
      '-out',
      `${name}.crt`,
      '-days',
      '2',
      '-subj',
      `/CN=${name}`,
      '-extensions',
      'ca',
    ]);
    return this.#read(name);
  }

  /**
   * A certificate with CN `name` signed by the CA `ca`; a server certificate names
   * `ipAddresses` (default 127.0.0.1 alone) as its subject alternative names.
   */
  async leaf(
    name: string,
    ca: string,
    profile: 'server' | 'client',
    ipAddresses: readonly string[] = ['127.0.0.1'],
  ): Promise<Issued> {
    // The extensions of this one certificate: the shared configuration with its own addresses.
    const extFile = join(this.dir, `${name}.ext`);
    await writeFile(
      extFile,
      OPENSSL_CONF.replace(
        'subjectAltName = IP:127.0.0.1',
        `subjectAltName = ${ipAddresses.map((ip) => `IP:${ip}`).join(',')}`,
      ),
    );
    await this.#openssl([
      'req',
      '-new',
      ...this.#newKey(name),
      '-out',
      `${name}.csr`,
      '-subj',
      `/CN=${name}`,
    ]);
    await this.#openssl([
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      `${ca}.crt`,
      '-CAkey',
      `${ca}.key`,
      '-set_serial',
      `0x${randomBytes(8).toString('hex')}`,
      '-days',
      '2',
      '-out',
      `${name}.crt`,
      '-extfile',
      extFile,
      '-extensions',
      profile,
    ]);
    return this.#read(name);
  }

  /**
   * A bare P-256 private key with no certificate, e.g. to sign tokens. SEC 1 ("EC PRIVATE KEY"),
   * not PKCS#8: kube-apiserver reads public keys out of EC private keys only in that form.
   */
  async key(name: string): Promise<string> {
    const keyFile = join(this.dir, `${name}.key`);
    await this.#openssl(['ecparam', '-genkey', '-name', 'prime256v1', '-noout', '-out', keyFile]);
    return keyFile;
  }

  #newKey(name: string): string[] {
    return [
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-keyout',
      `${name}.key`,
      '-config',
      this.#conf,
    ];
  }

  async #openssl(args: string[]): Promise<void> {
    await run('openssl', args, {
      cwd: this.dir,
      env: { ...process.env, OPENSSL_CONF: this.#conf },
    });
  }

  async #read(name: string): Promise<Issued> {
    const certFile = join(this.dir, `${name}.crt`);
    const keyFile = join(this.dir, `${name}.key`);
    const [cert, key] = await Promise.all([readFile(certFile), readFile(keyFile)]);
    return { certFile, keyFile, cert, key, fingerprint: new X509Certificate(cert).fingerprint256 };
  }
}
