/** Schema nodes that several destinations share: an http(s) URL, a reference to a Secret key. */
import type { FieldCheck } from '../resource/check.ts';
import type { SchemaNode } from '../resource/schema.ts';
import type { SecretKeyRef } from './destination.ts';

/** A lowercase RFC 1123 subdomain: the names of Secrets (and most other objects). */
export const DNS1123_SUBDOMAIN =
  '^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$';

/** What a Secret name that is no RFC 1123 subdomain is told. */
export const SECRET_NAME_MESSAGE = 'a Secret name is a lowercase RFC 1123 subdomain';

/**
 * An http(s) URL: the CRD's pattern (a host without user information, no fragment) is stricter
 * than the operator, which reads the URL as the WHATWG parser does and says what is wrong with it.
 */
export function httpUrlNode(description: string): SchemaNode {
  return {
    type: 'string',
    description,
    // http(s), a host without user information, no fragment.
    pattern: '^[Hh][Tt][Tt][Pp][Ss]?://[^/?#@\\s]+([/?][^#\\s]*)?$',
    operator: {
      parse: (text: string, path: string, check: FieldCheck) => check.httpUrl(text, path),
    },
  };
}

/** The key of a Secret holding a credential; both parts required, with Kubernetes' own limits. */
export function secretKeyRefNode(description: string, keyDescription: string): SchemaNode {
  return {
    type: 'object',
    description,
    required: ['name', 'key'],
    properties: {
      name: {
        type: 'string',
        description: "The Secret's name.",
        // Kubernetes' own limits on Secret names (a DNS subdomain) and data keys, 253 characters.
        maxLength: 253,
        pattern: DNS1123_SUBDOMAIN,
        operator: { patternMessage: SECRET_NAME_MESSAGE },
      },
      key: {
        type: 'string',
        description: keyDescription,
        maxLength: 253,
        pattern: '^[-._a-zA-Z0-9]+$',
        operator: { patternMessage: 'a Secret key is letters, digits, "-", "_" and "."' },
      },
    },
    operator: { typeMessage: 'expected an object with name and key' },
  };
}

/** A Secret key reference as {@link secretKeyRefNode} read it. */
export function asSecretKeyRef(value: unknown): SecretKeyRef | undefined {
  const ref = value as Partial<SecretKeyRef> | undefined;
  return ref?.name === undefined || ref.key === undefined
    ? undefined
    : { name: ref.name, key: ref.key };
}
