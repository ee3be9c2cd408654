/**
 * Standalone mode's control plane: AuditSink, AuditPipeline and Secret manifests read from YAML or
 * JSON files (a file, or every `.yaml`, `.yml` and `.json` file under a directory), in place of a
 * cluster.
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import { extname, join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { isRecord } from '../audit/types.ts';
import { type SinkSettings, sinkFromResource, SinkSpecError } from '../sinks/spec.ts';
import type { Sink } from '../sinks/types.ts';

import type { SecretStore } from '../runtime/secrets.ts';

/** What a set of manifest files declares. */
export interface LoadedResources {
  readonly sinks: Sink[];
  readonly secrets: SecretStore;
  /** Problems that kept a manifest out, each naming its file and field: the rest still loads. */
  readonly problems: string[];
  /** Accepted, but probably not meant (e.g. unknown policy fields). */
  readonly warnings: string[];
  /** The files read, for watching. */
  readonly files: string[];
}

const MANIFEST_EXTENSIONS = new Set(['.yaml', '.yml', '.json']);

/**
 * Reads every manifest under `path`. A bad manifest is reported and skipped; the others load, so
 * one typo never takes down every sink. Secrets without a namespace belong to `defaultNamespace`.
 */
export async function loadResources(
  path: string,
  settings: SinkSettings,
  defaultNamespace: string,
): Promise<LoadedResources> {
  const files = await manifestFiles(path);
  const sinks: Sink[] = [];
  const secrets = new Map<string, Record<string, string>>();
  const problems: string[] = [];
  const warnings: string[] = [];
  const seen = new Map<string, string>();
  const seenSecrets = new Map<string, string>();
  const add = (value: unknown, where: string) => {
    const kind = isRecord(value) ? value.kind : undefined;
    if (kind === 'Secret') {
      const secret = decodeSecret(value as Record<string, unknown>, defaultNamespace);
      if ('problem' in secret) {
        problems.push(`${where}: ${secret.problem}`);
        return;
      }
      const previous = seenSecrets.get(secret.key);
      if (previous !== undefined) {
        problems.push(
          `${where}: Secret ${secret.key} is already declared in ${previous}; this one is ignored`,
        );
        return;
      }
      seenSecrets.set(secret.key, where);
      secrets.set(secret.key, secret.data);
      return;
    }
    try {
      const sink = sinkFromResource(value, settings);
      const previous = seen.get(sink.key);
      if (previous !== undefined) {
        problems.push(
          `${where}: ${sink.key} is already declared in ${previous}; this one is ignored`,
        );
        return;
      }
      seen.set(sink.key, where);
      sinks.push(sink);
      for (const warning of sink.warnings) warnings.push(`${where}: ${sink.key}: ${warning}`);
    } catch (err) {
      if (!(err instanceof SinkSpecError)) throw err;
      problems.push(`${where}: ${err.message}`);
    }
  };
  for (const file of files) {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      // Removed or unreadable since it was listed: report it, load the rest.
      problems.push(`${file}: cannot read: ${(err as Error).message}`);
      continue;
    }
    const docs = parseAllDocuments(text);
    const list = Array.isArray(docs) ? docs : [];
    for (const [i, doc] of list.entries()) {
      const where = list.length > 1 ? `${file}#${i + 1}` : file;
      if (doc.errors.length > 0) {
        problems.push(
          `${where}: malformed YAML/JSON: ${doc.errors[0]?.message.split('\n')[0] ?? ''}`,
        );
        continue;
      }
      let value: unknown;
      try {
        // Aliases are resolved here: an undefined one, or too many (an alias bomb), throws.
        value = doc.toJS({ maxAliasCount: 100 });
      } catch (err) {
        problems.push(`${where}: malformed YAML: ${(err as Error).message}`);
        continue;
      }
      if (value === null || value === undefined) continue;
      // `kubectl get -o yaml` writes several objects as a List; apply reads its items.
      if (isRecord(value) && value.kind === 'List' && Array.isArray(value.items)) {
        value.items.forEach((item, j) => add(item, `${where} items[${j}]`));
      } else {
        add(value, where);
      }
    }
  }
  return { sinks, secrets, problems, warnings, files };
}

async function manifestFiles(path: string): Promise<string[]> {
  const info = await stat(path);
  if (info.isFile()) return [path];
  const entries = await readdir(path, { withFileTypes: true, recursive: true });
  const candidates = entries
    .filter((e) => (e.isFile() || e.isSymbolicLink()) && MANIFEST_EXTENSIONS.has(extname(e.name)))
    .map((e) => join(e.parentPath, e.name));
  // A symlink counts when it leads to a file, as `kubectl apply -f dir/` reads it.
  const files = await Promise.all(
    candidates.map(async (f) =>
      (await stat(f).catch(() => undefined))?.isFile() === true ? f : '',
    ),
  );
  return files.filter((f) => f !== '').sort();
}

function decodeSecret(
  value: Record<string, unknown>,
  defaultNamespace: string,
): { key: string; data: Record<string, string> } | { problem: string } {
  const metadata = isRecord(value.metadata) ? value.metadata : {};
  const name = typeof metadata.name === 'string' ? metadata.name : '';
  if (name === '') return { problem: 'Secret: metadata.name: Required value' };
  const namespace = typeof metadata.namespace === 'string' ? metadata.namespace : defaultNamespace;
  const data: Record<string, string> = {};
  // As the apiserver merges them: stringData wins over data for the same key.
  if (isRecord(value.data)) {
    for (const [k, v] of Object.entries(value.data)) {
      if (typeof v !== 'string' || !BASE64.test(v.replace(/\s/g, ''))) {
        return {
          problem: `Secret ${name}: data.${k}: expected base64 (stringData takes plain text)`,
        };
      }
      data[k] = Buffer.from(v, 'base64').toString('utf8');
    }
  }
  if (isRecord(value.stringData)) {
    for (const [k, v] of Object.entries(value.stringData)) {
      if (typeof v !== 'string')
        return { problem: `Secret ${name}: stringData.${k}: expected text` };
      data[k] = v;
    }
  }
  return { key: `${namespace}/${name}`, data };
}

// Standard base64 with padding, as the apiserver requires for Secret data.
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
