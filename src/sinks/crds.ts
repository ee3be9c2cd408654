/**
 * The two CustomResourceDefinitions, declared once: `npm run gen:crds` writes crds/, the chart's
 * copies and docs/resource-reference.md from {@link customResourceDefinitions}, and the operator
 * reads the same schema nodes (`spec.ts`, `outputs/<kind>/spec.ts`) to check resources in process.
 * Pure.
 */
import { LEVELS, STAGES } from '../audit/types.ts';
import { DESTINATION_KINDS, DESTINATION_NAMES } from '../outputs/kinds.ts';
import { POLICY_API_VERSIONS } from '../policy/load.ts';
import { openApiOf, type PrinterColumn, type SchemaNode } from '../resource/schema.ts';
import {
  DESTINATION_REQUIRED,
  LEGACY_POLICY_SCHEMA,
  RECEIVER_SCHEMA,
  SINK_API_VERSION,
  SINK_RECEIVER_SCHEMA,
} from './spec.ts';

/**
 * `spec.policy` of an AuditPipeline: an audit.k8s.io/v1 Policy body. The operator reads it with
 * the policy loader (`policy/load.ts`), which names problems as upstream does; this is the CRD's
 * half only.
 */
export const PIPELINE_POLICY_SCHEMA: SchemaNode = {
  type: 'object',
  description:
    'An audit.k8s.io/v1 Policy body, evaluated per event exactly as the kube-apiserver evaluates its --audit-policy-file: rules top to bottom, the first match decides the level. A whole Policy document may be pasted: apiVersion, kind and metadata are then checked and ignored.',
  required: ['rules'],
  'x-kubernetes-validations': [
    {
      rule: '!has(self.kind) || has(self.apiVersion)',
      fieldPath: '.apiVersion',
      reason: 'FieldValueRequired',
      message: '"audit.k8s.io/v1"',
    },
  ],
  properties: {
    apiVersion: {
      type: 'string',
      description:
        'Optional, for a pasted Policy document: audit.k8s.io/v1 (or the deprecated audit.k8s.io/v1beta1).',
      enum: POLICY_API_VERSIONS,
    },
    kind: {
      type: 'string',
      description: 'Optional, for a pasted Policy document: Policy.',
      enum: ['Policy'],
    },
    metadata: {
      type: 'object',
      description: 'Optional, for a pasted Policy document; ignored.',
      // A pasted document's metadata carries any ObjectMeta field; none is used.
      'x-kubernetes-preserve-unknown-fields': true,
    },
    rules: {
      type: 'array',
      description:
        'The rules, evaluated top to bottom; the first that matches a request decides its level. A request no rule matches is not kept. At least one rule.',
      minItems: 1,
      // Bounds the cost of the per-rule checks; real policies have tens of rules.
      maxItems: 1000,
      items: {
        type: 'object',
        description:
          'One rule: it matches a request when each of its selectors that is set (users, userGroups, verbs, resources, namespaces, nonResourceURLs) matches.',
        required: ['level'],
        'x-kubernetes-validations': [
          {
            rule: '!has(self.nonResourceURLs) || size(self.nonResourceURLs) == 0 || ((!has(self.resources) || size(self.resources) == 0) && (!has(self.namespaces) || size(self.namespaces) == 0))',
            fieldPath: '.nonResourceURLs',
            message: 'rules cannot apply to both regular resources and non-resource URLs',
          },
        ],
        properties: {
          level: {
            type: 'string',
            description:
              'How much of a matching request to keep: None (drop it), Metadata (no bodies), Request (plus the request body) or RequestResponse (plus the response body). Never more than the kube-apiserver captured.',
            enum: LEVELS,
          },
          users: {
            type: 'array',
            description: 'User names the rule applies to (exact); empty means all.',
            items: {
              type: 'string',
            },
          },
          userGroups: {
            type: 'array',
            description:
              'Groups the rule applies to: a request matches when its user is in any of them; empty means all.',
            items: {
              type: 'string',
            },
          },
          verbs: {
            type: 'array',
            description:
              "Verbs the rule applies to (get, list, watch, create, update, patch, delete, deletecollection, or a non-resource request's lower-case HTTP method); empty means all.",
            items: {
              type: 'string',
            },
          },
          resources: {
            type: 'array',
            description: 'Resources the rule applies to; empty means all.',
            maxItems: 100,
            items: {
              type: 'object',
              description: 'Resources of one API group.',
              'x-kubernetes-validations': [
                {
                  rule: '!has(self.resourceNames) || size(self.resourceNames) == 0 || (has(self.resources) && size(self.resources) > 0)',
                  fieldPath: '.resourceNames',
                  message: 'using resourceNames requires at least one resource',
                },
              ],
              properties: {
                group: {
                  type: 'string',
                  description:
                    'The API group without version, e.g. rbac.authorization.k8s.io; empty for the core group; "*" for every group (as in the audit policies of kube-apiserver 1.36 and later).',
                  maxLength: 253,
                  pattern:
                    '^(\\*|[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*)?$',
                },
                resources: {
                  type: 'array',
                  description:
                    'Resources of the group: "pods", a subresource "pods/log", all subresources "pods/*", "*" for every resource or "*/scale" for one subresource of every resource; empty means all.',
                  items: {
                    type: 'string',
                  },
                },
                resourceNames: {
                  type: 'array',
                  description: 'Object names; empty means all. Needs resources.',
                  items: {
                    type: 'string',
                  },
                },
              },
            },
          },
          namespaces: {
            type: 'array',
            description:
              'Namespaces the rule applies to; "" matches requests outside any namespace (cluster-scoped resources); empty means all. Cannot be combined with nonResourceURLs.',
            items: {
              type: 'string',
            },
          },
          nonResourceURLs: {
            type: 'array',
            description:
              'Paths of non-resource requests (e.g. /healthz, /api*): exact, or a prefix ending in "*". Cannot be combined with resources or namespaces.',
            items: {
              type: 'string',
              pattern: '^(\\*|/[^*]*\\*?)$',
            },
          },
          omitStages: {
            type: 'array',
            description:
              "Stages not to keep for matching requests, in addition to the policy's omitStages.",
            items: {
              type: 'string',
              enum: STAGES,
            },
          },
          omitManagedFields: {
            type: 'boolean',
            description:
              "Strip metadata.managedFields from request and response bodies of matching requests; overrides the policy's omitManagedFields when set.",
          },
        },
      },
    },
    omitStages: {
      type: 'array',
      description: 'Stages never kept, for every rule.',
      items: {
        type: 'string',
        enum: STAGES,
      },
    },
    omitManagedFields: {
      type: 'boolean',
      description:
        'Strip metadata.managedFields from request and response bodies, unless a rule says otherwise. Default false.',
    },
  },
};

/** `status` of both resources, written by the operator's leader (`sinks/status.ts`). */
export const STATUS_SCHEMA: SchemaNode = {
  type: 'object',
  description: "What the operator observed; written by the operator's leader.",
  properties: {
    observedGeneration: {
      type: 'integer',
      format: 'int64',
      description: 'The metadata.generation this status describes.',
      minimum: 0,
    },
    conditions: {
      type: 'array',
      description:
        'Ready (receiving and delivering), PolicyValid, ReceiverReady, DestinationReady and CaptureSufficient (false when received events carry less than the policy asks for, e.g. the kube-apiserver sends Metadata and the sink asks for RequestResponse).',
      maxItems: 16,
      'x-kubernetes-list-type': 'map',
      'x-kubernetes-list-map-keys': ['type'],
      items: {
        type: 'object',
        description: "One aspect of the sink's state.",
        required: ['type', 'status', 'lastTransitionTime', 'reason', 'message'],
        properties: {
          type: {
            type: 'string',
            description:
              'Ready, PolicyValid, ReceiverReady, DestinationReady or CaptureSufficient.',
            maxLength: 316,
            pattern:
              '^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$',
          },
          status: {
            type: 'string',
            description: 'True, False or Unknown.',
            enum: ['True', 'False', 'Unknown'],
          },
          reason: {
            type: 'string',
            description: 'A CamelCase or UPPER_CASE word for the state, stable for tools.',
            minLength: 1,
            maxLength: 1024,
            pattern: '^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$',
          },
          message: {
            type: 'string',
            description: 'What a person should know about the state.',
            maxLength: 32768,
          },
          lastTransitionTime: {
            type: 'string',
            format: 'date-time',
            description: 'When the status last changed.',
          },
          observedGeneration: {
            type: 'integer',
            format: 'int64',
            description: 'The metadata.generation the condition was set for.',
            minimum: 0,
          },
        },
      },
    },
    received: {
      type: 'integer',
      format: 'int64',
      description: 'Events received since the operator started.',
      minimum: 0,
    },
    written: {
      type: 'integer',
      format: 'int64',
      description: 'Events written to every destination since the operator started.',
      minimum: 0,
    },
    failed: {
      type: 'integer',
      format: 'int64',
      description:
        'Events a destination could not take, since the operator started; see the DestinationReady condition for why.',
      minimum: 0,
    },
    dropped: {
      type: 'object',
      description: 'Events not delivered since the operator started, by reason.',
      properties: {
        policy: {
          type: 'integer',
          format: 'int64',
          description: "Dropped by the sink's policy (level None or an omitted stage).",
          minimum: 0,
        },
        namespace: {
          type: 'integer',
          format: 'int64',
          description:
            'Outside the namespace an AuditPipeline is scoped to; always 0 for an AuditSink, which sees every namespace.',
          minimum: 0,
        },
        overflow: {
          type: 'integer',
          format: 'int64',
          description: "Dropped because the sink's queue was full.",
          minimum: 0,
        },
        rejected: {
          type: 'integer',
          format: 'int64',
          description:
            'Refused by the destination (HTTP 400 or 422) and not kept as a dead letter: the dead-letter file was full or could not be written.',
          minimum: 0,
        },
      },
    },
    deadLettered: {
      type: 'object',
      description:
        "Events set aside in the sink's dead-letter store since the operator started, by reason; see `kube-audit-operator dead-letter list`.",
      properties: {
        refused: {
          type: 'integer',
          format: 'int64',
          description:
            'Refused one by one by a destination (HTTP 400 or 422): the rest of their batch was written.',
          minimum: 0,
        },
        unencodable: {
          type: 'integer',
          format: 'int64',
          description: 'Events an output could not encode (never checked on receipt).',
          minimum: 0,
        },
      },
    },
    lastEventTime: {
      type: 'string',
      format: 'date-time',
      description: 'When the sink last received an event.',
    },
    endpoint: {
      type: 'string',
      description:
        "The sink's own receiver URL, for a kube-apiserver or native AuditSink that should post to this sink only.",
    },
  },
};

/** One of the two resources, and what its CRD says beyond the shared parts. */
interface ResourceDefinition {
  readonly kind: 'AuditSink' | 'AuditPipeline';
  readonly plural: string;
  readonly scope: 'Cluster' | 'Namespaced';
  readonly shortName: string;
  /** The comment at the top of the generated file. */
  readonly header: string;
  readonly description: string;
  readonly specDescription: string;
  readonly policy: SchemaNode;
  /** Printer columns between Ready and the destinations' own. */
  readonly columns: readonly PrinterColumn[];
  /** `spec` fields after the policy and the destinations. */
  readonly extraSpec: Readonly<Record<string, SchemaNode>>;
}

const RESOURCES: readonly ResourceDefinition[] = [
  {
    kind: 'AuditSink',
    plural: 'auditsinks',
    scope: 'Cluster',
    // `aus` clashes with no built-in resource, and stays unambiguous on clusters that still serve
    // the native auditregistration.k8s.io AuditSink, which takes the plain name `auditsinks` there.
    shortName: 'aus',
    header: [
      'AuditSink: the removed auditregistration.k8s.io/v1alpha1 AuditSink, revived. An old manifest',
      'migrates by changing its apiVersion to kube-audit.dev/v1alpha1; spec.influxdb is the addition.',
    ].join('\n'),
    description:
      'AuditSink receives every audit event the operator is sent, keeps those its policy selects at the level it names, and writes them to InfluxDB and/or forwards them to a webhook. It revives the removed auditregistration.k8s.io/v1alpha1 AuditSink: an old manifest migrates by changing its apiVersion.',
    specDescription: 'What the sink keeps and where it delivers it.',
    policy: LEGACY_POLICY_SCHEMA,
    columns: [
      {
        name: 'Level',
        type: 'string',
        description: 'The level of detail the sink keeps.',
        jsonPath: '.spec.policy.level',
      },
    ],
    extraSpec: { receiver: SINK_RECEIVER_SCHEMA },
  },
  {
    kind: 'AuditPipeline',
    plural: 'auditpipelines',
    scope: 'Namespaced',
    // `ap` is taken by several popular CRDs (e.g. agent pools); `apl` clashes with none we know of
    // and with no built-in resource.
    shortName: 'apl',
    header: [
      "AuditPipeline: a tenant's own audit trail. A full audit.k8s.io/v1 Policy evaluated as the",
      "kube-apiserver does, over the events of the pipeline's own namespace only, written to InfluxDB",
      'and/or forwarded to a webhook.',
    ].join('\n'),
    description:
      "AuditPipeline is a tenant's own audit trail: a full audit.k8s.io/v1 Policy, evaluated as the kube-apiserver evaluates it, over the audit events of the pipeline's own namespace (of every namespace for a pipeline in one of the operator's cluster-wide namespaces), written to InfluxDB and/or forwarded to a webhook.",
    specDescription: 'What the pipeline keeps and where it delivers it.',
    policy: PIPELINE_POLICY_SCHEMA,
    columns: [],
    extraSpec: { receiver: RECEIVER_SCHEMA },
  },
];

/** A generated CRD: its file name under crds/, the comment on top, and the object. */
export interface GeneratedCrd {
  readonly file: string;
  readonly header: string;
  readonly crd: Readonly<Record<string, unknown>>;
}

const [GROUP, VERSION] = SINK_API_VERSION.split('/') as [string, string];

/** The CRDs of both resources, from the schema nodes the operator reads them with. */
export function customResourceDefinitions(): GeneratedCrd[] {
  return RESOURCES.map((resource) => ({
    file: `${resource.plural}.${GROUP}.yaml`,
    header: resource.header,
    crd: crdOf(resource),
  }));
}

function crdOf(resource: ResourceDefinition): Record<string, unknown> {
  const destinations = DESTINATION_NAMES.map((name) => [name, DESTINATION_KINDS[name]] as const);
  const spec: SchemaNode = {
    type: 'object',
    description: resource.specDescription,
    required: ['policy'],
    'x-kubernetes-validations': [DESTINATION_REQUIRED],
    properties: {
      policy: resource.policy,
      ...Object.fromEntries(destinations.map(([name, kind]) => [name, kind.schema])),
      ...resource.extraSpec,
    },
  };
  const columns: PrinterColumn[] = [
    {
      name: 'Ready',
      type: 'string',
      description: 'Whether the sink receives and delivers events.',
      jsonPath: '.status.conditions[?(@.type=="Ready")].status',
    },
    ...resource.columns,
    ...destinations.flatMap(([, kind]) => kind.columns ?? []),
    {
      name: 'Received',
      type: 'integer',
      description: 'Events received since the operator started.',
      jsonPath: '.status.received',
    },
    {
      name: 'Written',
      type: 'integer',
      description: 'Events written to every destination since the operator started.',
      jsonPath: '.status.written',
    },
    {
      name: 'Failed',
      type: 'integer',
      description: 'Events a destination could not take since the operator started.',
      jsonPath: '.status.failed',
      priority: 1,
    },
    {
      name: 'Endpoint',
      type: 'string',
      description: "The sink's own receiver URL.",
      jsonPath: '.status.endpoint',
      priority: 1,
    },
    { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' },
  ];
  const root: SchemaNode = {
    type: 'object',
    description: resource.description,
    required: ['spec'],
    properties: {
      apiVersion: {
        type: 'string',
        description: `The versioned schema of this representation: ${SINK_API_VERSION}.`,
      },
      kind: {
        type: 'string',
        description: `The REST resource this object represents: ${resource.kind}.`,
      },
      metadata: { type: 'object' },
      spec,
      status: STATUS_SCHEMA,
    },
  };
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: {
      name: `${resource.plural}.${GROUP}`,
      labels: {
        'app.kubernetes.io/name': 'kube-audit-operator',
        'app.kubernetes.io/part-of': 'kube-audit-operator',
      },
    },
    spec: {
      group: GROUP,
      scope: resource.scope,
      names: {
        kind: resource.kind,
        listKind: `${resource.kind}List`,
        plural: resource.plural,
        singular: resource.kind.toLowerCase(),
        shortNames: [resource.shortName],
        categories: ['audit'],
      },
      versions: [
        {
          name: VERSION,
          served: true,
          storage: true,
          subresources: { status: {} },
          additionalPrinterColumns: columns,
          schema: { openAPIV3Schema: openApiOf(root) },
        },
      ],
    },
  };
}
