/**
 * Checking a resource's fields in process against their {@link SchemaNode}s, as the kube-apiserver
 * checks them against the CRD, with every problem named by its field path
 * (`spec.influxdb.batchSize: Invalid value: 0: must be an integer from 1 to 100000`). Pure.
 */
import { isRecord } from '../audit/types.ts';
import { reasonPrefix, type SchemaNode } from './schema.ts';

/** Collects field problems in `path: message` form, and warnings. */
export class FieldCheck {
  readonly problems: string[] = [];
  readonly warnings: string[] = [];

  /** Records `path: message`. */
  add(path: string, message: string): void {
    this.problems.push(`${path}: ${message}`);
  }

  /** Records a problem that already names its path. */
  addRaw(problem: string): void {
    this.problems.push(problem);
  }

  /**
   * `value` checked against `node` (the OpenAPI keywords, the CEL rules that have an in-process
   * equivalent, and the node's own parser), with the node's defaults applied as the apiserver
   * applies them. Undefined when absent without a default, or when it has a problem; every
   * problem is recorded. Nulls count as absent, as the apiserver prunes them.
   */
  read(node: SchemaNode, value: unknown, path: string): unknown {
    if (value === undefined || value === null) {
      return node.default === undefined ? undefined : this.read(node, node.default, path);
    }
    const before = this.problems.length;
    const result = this.#value(node, value, path);
    return this.problems.length === before ? result : undefined;
  }

  #value(node: SchemaNode, value: unknown, path: string): unknown {
    const typeProblem = (expected: string) =>
      this.add(path, node.operator?.typeMessage ?? `expected ${expected}, got ${typeof value}`);
    if (node.enum !== undefined) {
      if (!node.enum.includes(value)) {
        this.add(
          path,
          `Unsupported value: ${quoted(value)}: supported values: ${node.enum.map((v) => quoted(v)).join(', ')}`,
        );
      }
      return value;
    }
    switch (node.type) {
      case 'object':
        if (!isRecord(value)) return typeProblem('an object');
        return this.#object(node, value, path);
      case 'array':
        if (!Array.isArray(value)) return typeProblem('an array');
        return this.#array(node, value, path);
      case 'string':
        if (typeof value !== 'string') return typeProblem('a string');
        return this.#string(node, value, path);
      case 'integer':
      case 'number': {
        const integer = node.type === 'integer';
        const min = node.minimum ?? -Infinity;
        const max = node.maximum ?? Infinity;
        if (
          typeof value !== 'number' ||
          (integer && !Number.isInteger(value)) ||
          value < min ||
          value > max
        ) {
          const bounds =
            node.minimum === undefined || node.maximum === undefined
              ? ''
              : ` from ${node.minimum} to ${node.maximum}`;
          this.add(
            path,
            node.operator?.typeMessage ??
              `Invalid value: ${quoted(value)}: must be ${integer ? 'an integer' : 'a number'}${bounds}`,
          );
          return undefined;
        }
        return this.#parsed(node, value, path);
      }
      case 'boolean':
        if (typeof value !== 'boolean') return typeProblem('true or false');
        return this.#parsed(node, value, path);
    }
  }

  #object(node: SchemaNode, value: Record<string, unknown>, path: string): unknown {
    const out: Record<string, unknown> = {};
    const missing = new Set<string>();
    for (const key of node.required ?? []) {
      const child = value[key];
      // An empty string is no value either, as Kubernetes' own validation has it.
      if (child === undefined || child === null || child === '') {
        this.add(`${path}.${key}`, 'Required value');
        missing.add(key);
      }
    }
    for (const [key, child] of Object.entries(node.properties ?? {})) {
      if (missing.has(key)) continue;
      const read = this.read(child, value[key], `${path}.${key}`);
      if (read !== undefined) out[key] = read;
    }
    const extra = node.additionalProperties;
    if (extra !== undefined) {
      const entries = Object.entries(value);
      if (node.maxProperties !== undefined && entries.length > node.maxProperties) {
        this.add(
          path,
          `Too many: ${entries.length}: must have at most ${node.maxProperties} items`,
        );
      }
      for (const [key, child] of entries) {
        const read = this.read(extra, child, `${path}[${quoted(key)}]`);
        if (read !== undefined) out[key] = read;
      }
    }
    // Properties the node does not declare are left out, as the apiserver prunes them.
    for (const rule of node['x-kubernetes-validations'] ?? []) {
      if (rule.holds !== undefined && !rule.holds(value)) {
        this.add(`${path}${rule.fieldPath ?? ''}`, `${reasonPrefix(rule.reason)}: ${rule.message}`);
      }
    }
    return this.#parsed(node, out, path);
  }

  #array(node: SchemaNode, value: readonly unknown[], path: string): unknown {
    if (node.minItems !== undefined && value.length < node.minItems) {
      this.add(path, `Invalid value: must have at least ${node.minItems} items`);
    }
    if (node.maxItems !== undefined && value.length > node.maxItems) {
      this.add(path, `Too many: ${value.length}: must have at most ${node.maxItems} items`);
    }
    const out: unknown[] = [];
    const set = node['x-kubernetes-list-type'] === 'set';
    value.forEach((item, i) => {
      const at = `${path}[${i}]`;
      const read = node.items === undefined ? item : this.read(node.items, item, at);
      if (read === undefined) return;
      if (set && out.some((earlier) => JSON.stringify(earlier) === JSON.stringify(read))) {
        this.add(at, `Duplicate value: ${quoted(item)}`);
        return;
      }
      out.push(read);
    });
    return this.#parsed(node, out, path);
  }

  #string(node: SchemaNode, value: string, path: string): unknown {
    // OpenAPI lengths count characters (Go: runes), not UTF-16 units.
    const length = [...value].length;
    if (node.maxLength !== undefined && length > node.maxLength) {
      this.add(path, `Invalid value: may not be more than ${node.maxLength} chars long`);
      return undefined;
    }
    if (node.minLength !== undefined && length < node.minLength) {
      this.add(
        path,
        `Invalid value: ${quoted(value)}: must be at least ${node.minLength} chars long`,
      );
      return undefined;
    }
    // A node with its own parser checks the value its way (a URL, a duration), and says so better.
    if (
      node.operator?.parse === undefined &&
      node.pattern !== undefined &&
      !new RegExp(node.pattern, 'u').test(value)
    ) {
      this.add(
        path,
        `Invalid value: ${quoted(value)}: ${node.operator?.patternMessage ?? `must match ${node.pattern}`}`,
      );
      return undefined;
    }
    return this.#parsed(node, value, path);
  }

  #parsed(node: SchemaNode, value: unknown, path: string): unknown {
    const parse = node.operator?.parse as
      ((value: unknown, path: string, check: FieldCheck) => unknown) | undefined;
    return parse === undefined ? value : parse(value, path, this);
  }

  /**
   * An http(s) URL as the WHATWG parser reads it, without credentials or fragment; undefined (and
   * a problem recorded) otherwise.
   */
  httpUrl(text: string, path: string): string | undefined {
    let url: URL;
    try {
      url = new URL(text);
    } catch {
      this.add(path, `Invalid value: ${quoted(text)}: not a URL`);
      return undefined;
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      this.add(path, `Invalid value: ${quoted(text)}: the scheme must be http or https`);
      return undefined;
    }
    if (url.username !== '' || url.password !== '') {
      this.add(path, 'Invalid value: credentials do not belong in the URL: use a token Secret');
      return undefined;
    }
    if (url.hash !== '') {
      this.add(path, `Invalid value: ${quoted(text)}: fragments are not allowed`);
      return undefined;
    }
    return text;
  }
}

/**
 * A value as error messages quote it: JSON, cut to 100 characters, and never deeper than a few
 * levels, so that a hostile manifest (nested thousands deep, megabytes long) costs nothing to
 * report.
 */
export function quoted(value: unknown): string {
  const text = JSON.stringify(shallow(value, 3)) ?? String(value);
  return text.length > 100 ? `${text.slice(0, 97)}...` : text;
}

function shallow(value: unknown, depth: number): unknown {
  if (typeof value === 'bigint') return `${value}n`;
  if (value === null || typeof value !== 'object') return value;
  if (depth === 0) return Array.isArray(value) ? '[...]' : '{...}';
  if (Array.isArray(value)) return value.slice(0, 10).map((v) => shallow(v, depth - 1));
  return Object.fromEntries(
    Object.entries(value)
      .slice(0, 10)
      .map(([k, v]) => [k, shallow(v, depth - 1)]),
  );
}
