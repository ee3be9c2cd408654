// Starts the real receiver (fastify over HTTPS) in this process on 127.0.0.1 with free ports, talks
// to it with node:https and node:tls clients, and runs the `openssl` command-line tool to issue the
// CA, server and client certificates. The Ingest behind it is a small recording object.
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { request as httpsRequest } from 'node:https';
import type { IncomingHttpHeaders } from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type TLSSocket } from 'node:tls';
import { promisify } from 'node:util';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditEvent } from '../../../src/audit/types.ts';
import {
  CertificateError,
  type Receiver,
  type ReceiverLogger,
  startReceiver,
  validateReceiverOptions,
} from '../../../src/receiver/index.ts';
import type { Ingest, IngestResult, IngestTarget } from '../../../src/sinks/ingest.ts';
import { type Issued, TestPki } from '../../harness/pki.ts';

const run = promisify(execFile);

const TOKEN = 'apiserver-webhook-token-9c1f';
const FIXTURES = new URL('../../fixtures/apiserver-1.20/batches/', import.meta.url);
const BATCH_FILES = [
  { file: '00001.json', count: 13 },
  { file: '00002.json', count: 10 },
] as const;

/** Records what the receiver hands on and accepts all of it. */
class RecordingIngest implements Ingest {
  readonly calls: { events: AuditEvent[]; target: IngestTarget }[] = [];

  ingest(events: AuditEvent[], target: IngestTarget): Promise<IngestResult> {
    this.calls.push({ events, target });
    return Promise.resolve({ ok: true, accepted: events.length });
  }

  hasSink(): boolean {
    return false;
  }
}

interface Answer {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly body: string;
}

interface ClientOptions {
  readonly path?: string;
  readonly body?: Buffer | string;
  readonly headers?: Record<string, string>;
  readonly client?: Issued;
}

let pki: TestPki;
let ca: Issued;
let serving: { certFile: string; keyFile: string };
let client: Issued;
let strangerClient: Issued;
let receiver: Receiver;
let ingest: RecordingIngest;
const logged: { level: string; message: string }[] = [];

/** One HTTPS request on a fresh connection (no TLS session reuse), trusting the test CA. */
function send(url: string, options: ClientOptions = {}): Promise<Answer> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      {
        host: hostname,
        port,
        method: options.body === undefined ? 'GET' : 'POST',
        path: options.path ?? '/',
        ca: ca.cert,
        ...(options.client === undefined
          ? {}
          : { cert: options.client.cert, key: options.client.key }),
        headers: options.headers ?? {},
        agent: false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: Buffer.concat(chunks).toString('utf8'),
          }),
        );
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(options.body);
  });
}

/** POSTs an EventList as the kube-apiserver's audit webhook does. */
function postAsApiserver(
  url: string,
  body: Buffer | string,
  extra: ClientOptions = {},
): Promise<Answer> {
  return send(url, {
    path: '/audit/v1/events?timeout=30s',
    body,
    ...extra,
    headers: {
      'content-type': 'application/json',
      accept: 'application/json, */*',
      'user-agent': 'kube-apiserver/v1.20.2 (linux/amd64) kubernetes/faecb19',
      ...extra.headers,
    },
  });
}

/** The fingerprint of the certificate a fresh TLS handshake presents. */
function handshakeFingerprint(url: string): Promise<string> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket: TLSSocket = connect({ host: hostname, port: Number(port), ca: ca.cert }, () => {
      const fingerprint = socket.getPeerCertificate().fingerprint256;
      socket.end();
      resolve(fingerprint);
    });
    socket.on('error', reject);
  });
}

const ONE_EVENT = JSON.stringify({
  kind: 'EventList',
  apiVersion: 'audit.k8s.io/v1',
  items: [
    {
      level: 'Metadata',
      auditID: 'a0c2e1d4-0000-4000-8000-000000000001',
      stage: 'ResponseComplete',
      requestURI: '/api/v1/namespaces',
      verb: 'list',
      user: { username: 'admin' },
      stageTimestamp: '2026-11-22T04:08:57.440160Z',
    },
  ],
});

const log: ReceiverLogger = (level, _bindings, message) => logged.push({ level, message });

beforeAll(async () => {
  try {
    await run('openssl', ['version']);
  } catch (err) {
    throw new Error(
      'the openssl command-line tool is needed to issue test certificates: install openssl',
      {
        cause: err,
      },
    );
  }
  pki = new TestPki(await mkdtemp(join(tmpdir(), 'receiver-tls-')));
  await pki.init();
  ca = await pki.ca('client-and-server-ca');
  await pki.ca('stranger-ca');
  const server = await pki.leaf('server-1', 'client-and-server-ca', 'server');
  client = await pki.leaf('apiserver-client', 'client-and-server-ca', 'client');
  strangerClient = await pki.leaf('stranger-client', 'stranger-ca', 'client');
  // The receiver serves from fixed paths, as from a mounted Secret; reloads rewrite them.
  serving = { certFile: join(pki.dir, 'tls.crt'), keyFile: join(pki.dir, 'tls.key') };
  await writeFile(serving.certFile, server.cert);
  await writeFile(serving.keyFile, server.key);

  ingest = new RecordingIngest();
  receiver = await startReceiver(
    validateReceiverOptions({
      host: '127.0.0.1',
      port: 0,
      tls: { ...serving, clientCAFile: ca.certFile },
      tokens: () => new Set([TOKEN]),
      // Reloads in these tests are explicit; the watcher has its own receiver below.
      certificateCheckIntervalMs: 0,
      log,
    }),
    ingest,
    new Registry(),
  );
}, 60_000);

afterAll(async () => {
  await receiver?.close();
  if (pki !== undefined) await rm(pki.dir, { recursive: true, force: true });
});

describe('receiver over HTTPS', () => {
  it('listens on the loopback address with a free port', () => {
    expect(receiver.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    expect(new URL(receiver.url).port).not.toBe('0');
  });

  it('accepts the recorded apiserver batches as the apiserver posts them', async () => {
    for (const { file, count } of BATCH_FILES) {
      const body = await readFile(new URL(file, FIXTURES));
      const answer = await postAsApiserver(receiver.url, body, {
        headers: { authorization: `Bearer ${TOKEN}` },
      });
      expect(answer.status).toBe(200);
      expect(JSON.parse(answer.body)).toEqual({ accepted: count });
      expect(ingest.calls.at(-1)?.target).toEqual({ kind: 'all' });
      expect(ingest.calls.at(-1)?.events).toHaveLength(count);
    }
  });

  it('accepts a valid bearer token from a client without a certificate', async () => {
    const answer = await postAsApiserver(receiver.url, ONE_EVENT, {
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    expect(answer.status).toBe(200);
  });

  it('answers 401 to a bearer token no one accepts', async () => {
    const answer = await postAsApiserver(receiver.url, ONE_EVENT, {
      headers: { authorization: 'Bearer not-the-token' },
    });
    expect(answer.status).toBe(401);
    expect(JSON.parse(answer.body)).toMatchObject({ code: 'INVALID_TOKEN' });
  });

  it('answers 401 with WWW-Authenticate to a client with no credentials', async () => {
    const answer = await postAsApiserver(receiver.url, ONE_EVENT);
    expect(answer.status).toBe(401);
    expect(answer.headers['www-authenticate']).toBe('Bearer');
    expect(JSON.parse(answer.body)).toMatchObject({ code: 'UNAUTHENTICATED' });
  });

  it('accepts a client certificate signed by the client CA without a token', async () => {
    const answer = await postAsApiserver(receiver.url, ONE_EVENT, { client });
    expect(answer.status).toBe(200);
    expect(JSON.parse(answer.body)).toEqual({ accepted: 1 });
  });

  it('answers 403 to a client certificate from another CA', async () => {
    const answer = await postAsApiserver(receiver.url, ONE_EVENT, { client: strangerClient });
    expect(answer.status).toBe(403);
    expect(JSON.parse(answer.body)).toMatchObject({ code: 'UNTRUSTED_CLIENT_CERTIFICATE' });
  });

  it('serves health and readiness without credentials', async () => {
    expect((await send(receiver.url, { path: '/healthz' })).status).toBe(200);
    expect((await send(receiver.url, { path: '/readyz' })).status).toBe(200);
  });

  it('serves metrics to the credentials the audit endpoints accept: a bearer token or a client certificate', async () => {
    const none = await send(receiver.url, { path: '/metrics' });
    expect({ status: none.status, scheme: none.headers['www-authenticate'] }).toEqual({
      status: 401,
      scheme: 'Bearer',
    });
    expect(
      (await send(receiver.url, { path: '/metrics', headers: { authorization: 'Bearer nope' } }))
        .status,
    ).toBe(401);
    expect((await send(receiver.url, { path: '/metrics', client: strangerClient })).status).toBe(
      403,
    );
    const byToken = await send(receiver.url, {
      path: '/metrics',
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    expect(byToken.status).toBe(200);
    expect(byToken.body).toContain(
      'kube_audit_receiver_requests_total{endpoint="events",status="401"} 2',
    );
    expect(byToken.body).toContain(
      'kube_audit_receiver_requests_total{endpoint="events",status="403"} 1',
    );
    const byCertificate = await send(receiver.url, { path: '/metrics', client });
    expect(byCertificate.status).toBe(200);
    expect(byCertificate.body).toContain(
      'kube_audit_receiver_requests_total{endpoint="metrics",status="401"} 2',
    );
  });

  it('serves a reissued certificate from the next handshake after reloadCertificates()', async () => {
    const before = await handshakeFingerprint(receiver.url);
    const reissued = await pki.leaf('server-2', 'client-and-server-ca', 'server');
    expect(reissued.fingerprint).not.toBe(before);
    await writeFile(serving.certFile, reissued.cert);
    await writeFile(serving.keyFile, reissued.key);
    await receiver.reloadCertificates();
    expect(await handshakeFingerprint(receiver.url)).toBe(reissued.fingerprint);
    // Same listener: authenticated requests still work on the new certificate.
    const answer = await postAsApiserver(receiver.url, ONE_EVENT, { client });
    expect(answer.status).toBe(200);
    expect(logged.at(-1)).toEqual({ level: 'info', message: 'serving certificate reloaded' });
  });

  it('keeps the current certificate and reports the failure when the new files do not match', async () => {
    const current = await handshakeFingerprint(receiver.url);
    const other = await pki.leaf('server-3', 'client-and-server-ca', 'server');
    // A certificate whose key is not the one in the key file: a half-finished rotation.
    await writeFile(serving.certFile, other.cert);
    await expect(receiver.reloadCertificates()).rejects.toBeInstanceOf(CertificateError);
    expect(logged.at(-1)?.level).toBe('error');
    expect(await handshakeFingerprint(receiver.url)).toBe(current);
    const answer = await postAsApiserver(receiver.url, ONE_EVENT, {
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    expect(answer.status).toBe(200);
    // Completing the rotation makes the next reload succeed.
    await writeFile(serving.keyFile, other.key);
    await receiver.reloadCertificates();
    expect(await handshakeFingerprint(receiver.url)).toBe(other.fingerprint);
  });

  it('releases its port on close()', async () => {
    const port = Number(new URL(receiver.url).port);
    await receiver.close();
    await expect(handshakeFingerprint(receiver.url)).rejects.toThrow(/ECONNREFUSED/);
    const probe = createServer();
    await new Promise<void>((resolve, reject) => {
      probe.once('error', reject);
      probe.listen(port, '127.0.0.1', resolve);
    });
    await new Promise<void>((resolve) => probe.close(() => resolve()));
  });
});

describe('receiver start-up', () => {
  it('refuses to start when a certificate file is missing, naming the file', async () => {
    const missing = join(pki.dir, 'missing.key');
    const start = startReceiver(
      validateReceiverOptions({
        host: '127.0.0.1',
        port: 0,
        tls: { certFile: serving.certFile, keyFile: missing },
        tokens: () => new Set([TOKEN]),
      }),
      new RecordingIngest(),
      new Registry(),
    );
    await expect(start).rejects.toThrow(CertificateError);
    await expect(start).rejects.toThrow(`${missing}: cannot read the file (ENOENT)`);
  });

  it('refuses to start with a key that does not match the certificate, showing no key material', async () => {
    const other = await pki.leaf('mismatch', 'client-and-server-ca', 'server');
    const start = startReceiver(
      validateReceiverOptions({
        host: '127.0.0.1',
        port: 0,
        tls: { certFile: client.certFile, keyFile: other.keyFile },
        tokens: () => new Set([TOKEN]),
      }),
      new RecordingIngest(),
      new Registry(),
    );
    const error = await start.then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(error).toBeInstanceOf(CertificateError);
    expect((error as Error).message).toContain('unusable');
    expect((error as Error).message).not.toContain('PRIVATE KEY');
  });
});

describe('certificate file watching', () => {
  it('serves rewritten certificate files without being told', async () => {
    const dir = join(pki.dir, 'watched');
    await mkdir(dir);
    const files = { certFile: join(dir, 'tls.crt'), keyFile: join(dir, 'tls.key') };
    const first = await pki.leaf('watched-1', 'client-and-server-ca', 'server');
    await writeFile(files.certFile, first.cert);
    await writeFile(files.keyFile, first.key);
    const watched = await startReceiver(
      validateReceiverOptions({
        host: '127.0.0.1',
        port: 0,
        tls: files,
        tokens: () => new Set([TOKEN]),
        certificateCheckIntervalMs: 50,
      }),
      new RecordingIngest(),
      new Registry(),
    );
    try {
      expect(await handshakeFingerprint(watched.url)).toBe(first.fingerprint);
      const second = await pki.leaf('watched-2', 'client-and-server-ca', 'server');
      await writeFile(files.keyFile, second.key);
      await writeFile(files.certFile, second.cert);
      // Bounded wait: the check runs every 50 ms.
      let seen = '';
      for (let i = 0; i < 100 && seen !== second.fingerprint; i++) {
        await new Promise((r) => setTimeout(r, 50));
        seen = await handshakeFingerprint(watched.url);
      }
      expect(seen).toBe(second.fingerprint);
    } finally {
      await watched.close();
    }
  });
});
