/**
 * `spec.webhook`: forwarding as the removed AuditSink API had it (`throttle`, `clientConfig`), its
 * schema in both CRDs, and what it becomes, checked with the same declarations. Pure.
 */
import { isRecord } from '../../audit/types.ts';
import type { FieldCheck } from '../../resource/check.ts';
import type { SchemaNode } from '../../resource/schema.ts';
import { httpUrlNode } from '../fields.ts';

/** Forwarding of the filtered events as `audit.k8s.io/v1` EventList POSTs. */
export interface WebhookDestination {
  /** The resolved URL: `clientConfig.url`, or `https://<name>.<namespace>.svc:<port><path>`. */
  readonly url: string;
  /** PEM bundle to verify the server with; absent means the system roots. */
  readonly caBundle?: string;
  /** Batches per second. */
  readonly qps: number;
  /** Batches that may be sent at once before the rate applies. */
  readonly burst: number;
}

const PEM_CERTIFICATE = '-----BEGIN CERTIFICATE-----';

/** The schema of `spec.webhook`, with the defaults of the removed API. */
export const WEBHOOK_SCHEMA: SchemaNode = {
  type: 'object',
  description:
    "Forwarding of the kept events as audit.k8s.io/v1 EventList POSTs, as the removed API's dynamic webhook backend did. Optional.",
  'x-kubernetes-validations': [
    {
      rule: '!has(self.throttle) || has(self.clientConfig)',
      fieldPath: '.clientConfig',
      reason: 'FieldValueRequired',
      message: 'a throttle needs a webhook to throttle',
      holds: (self) => !present(self.throttle) || present(self.clientConfig),
    },
  ],
  properties: {
    throttle: {
      type: 'object',
      description:
        'The rate of POSTed batches. Without a throttle the defaults apply (10 per second, bursts of 15).',
      properties: {
        qps: {
          type: 'integer',
          format: 'int64',
          description: 'Batches sent per second. Default 10.',
          minimum: 1,
          maximum: 1_000_000,
          default: 10,
        },
        burst: {
          type: 'integer',
          format: 'int64',
          description: 'Batches that may be sent at once before the rate applies. Default 15.',
          minimum: 1,
          maximum: 1_000_000,
          default: 15,
        },
      },
      operator: { typeMessage: 'expected an object with qps and burst' },
    },
    clientConfig: {
      type: 'object',
      description: 'Where to send the events. Exactly one of url and service.',
      'x-kubernetes-validations': [
        {
          rule: 'has(self.url) != has(self.service)',
          reason: 'FieldValueRequired',
          message: 'exactly one of url or service',
          holds: (self) => present(self.url) !== present(self.service),
        },
      ],
      properties: {
        // http is allowed, as the removed API allowed it: old manifests must migrate unchanged.
        url: httpUrlNode(
          "The webhook's URL: http or https, without user information or fragment. http is accepted, as the removed API accepted it.",
        ),
        service: {
          type: 'object',
          description:
            'A Service in the cluster, called as https://<name>.<namespace>.svc:<port><path>; its certificate must be valid for <name>.<namespace>.svc.',
          required: ['namespace', 'name'],
          properties: {
            namespace: {
              type: 'string',
              description: "The Service's namespace.",
              minLength: 1,
              maxLength: 63,
            },
            name: {
              type: 'string',
              description: "The Service's name.",
              minLength: 1,
              maxLength: 63,
            },
            path: {
              type: 'string',
              description: 'The URL path to POST to, starting with "/".',
              pattern: '^(/.*)?$',
              operator: { patternMessage: 'must start with "/"' },
            },
            port: {
              type: 'integer',
              format: 'int32',
              description: 'The Service port. Default 443.',
              minimum: 1,
              maximum: 65_535,
              // As the apiserver's service resolver defaults it.
              default: 443,
            },
          },
          operator: { typeMessage: 'expected an object with namespace and name' },
        },
        caBundle: {
          type: 'string',
          format: 'byte',
          description:
            "Base64-encoded PEM certificates to verify the webhook's serving certificate with. Empty means the operator's system trust roots.",
          // 512 KiB of base64: larger than a full public root bundle.
          maxLength: 524_288,
          'x-kubernetes-validations': [
            {
              rule: `string(self).contains('${PEM_CERTIFICATE}')`,
              message: 'no PEM certificate found (expected base64-encoded PEM)',
            },
          ],
          operator: {
            typeMessage: 'expected base64-encoded PEM certificates',
            parse: decodeCaBundle,
          },
        },
      },
      operator: { typeMessage: 'expected an object with url or service' },
    },
  },
  operator: { typeMessage: 'expected an object' },
};

/** Defaults of the webhook throttle, as the removed AuditSink API had them. */
export const THROTTLE_DEFAULTS = Object.freeze({
  qps: WEBHOOK_SCHEMA.properties?.throttle?.properties?.qps?.default as number,
  burst: WEBHOOK_SCHEMA.properties?.throttle?.properties?.burst?.default as number,
});

function present(value: unknown): boolean {
  return value !== undefined && value !== null;
}

/** Whether `spec.webhook` names a destination: it has a clientConfig (a throttle alone does not). */
export function namesWebhook(value: unknown): boolean {
  return isRecord(value) && present(value.clientConfig);
}

/** The webhook `value` (`spec.webhook`) declares; see {@link WEBHOOK_SCHEMA}. */
export function webhookDestination(
  value: unknown,
  path: string,
  check: FieldCheck,
): WebhookDestination | undefined {
  const spec = check.read(WEBHOOK_SCHEMA, value, path) as Record<string, unknown> | undefined;
  const cc = spec?.clientConfig as Record<string, unknown> | undefined;
  if (spec === undefined || cc === undefined) return undefined;
  const throttle = spec.throttle as { qps: number; burst: number } | undefined;
  const service = cc.service as
    { namespace: string; name: string; port: number; path?: string } | undefined;
  // `https://<name>.<namespace>.svc:<port><path>`, as the apiserver's service resolver builds it.
  const url =
    service === undefined
      ? (cc.url as string)
      : `https://${service.name}.${service.namespace}.svc:${service.port}${service.path ?? ''}`;
  const caBundle = cc.caBundle as string | undefined;
  return {
    url,
    qps: throttle?.qps ?? THROTTLE_DEFAULTS.qps,
    burst: throttle?.burst ?? THROTTLE_DEFAULTS.burst,
    ...(caBundle === undefined ? {} : { caBundle }),
  };
}

// caBundle is base64 of PEM in the Kubernetes API ([]byte); a PEM string is accepted as-is.
function decodeCaBundle(value: string, path: string, check: FieldCheck): string | undefined {
  if (value === '') {
    check.add(path, 'expected base64-encoded PEM certificates');
    return undefined;
  }
  const pem = value.includes('-----BEGIN') ? value : Buffer.from(value, 'base64').toString('utf8');
  if (!pem.includes(PEM_CERTIFICATE)) {
    check.add(path, 'Invalid value: no PEM certificate found (expected base64-encoded PEM)');
    return undefined;
  }
  return pem;
}
