/** The webhook destination kind (`spec.webhook`): see {@link DestinationKind}. */
import type { DestinationKind } from '../destination.ts';
import {
  namesWebhook,
  WEBHOOK_SCHEMA,
  type WebhookDestination,
  webhookDestination,
} from './spec.ts';
import { WebhookOutput } from './webhook-output.ts';

/** Batches of at most 400 events: the apiserver's own default batch size. */
const WEBHOOK_BATCH_SIZE = 400;

/** Forwards each sink's events as EventList POSTs, as the removed dynamic backend did. */
export const WEBHOOK: DestinationKind<WebhookDestination> = {
  schema: WEBHOOK_SCHEMA,
  named: {
    rule: '(has(self.webhook) && has(self.webhook.clientConfig))',
    path: 'spec.webhook.clientConfig',
  },
  names: namesWebhook,
  parse: webhookDestination,
  secrets: () => [],
  // The apiserver's webhook sends what it has at once: so does this one.
  batching: () => ({ size: WEBHOOK_BATCH_SIZE, flushIntervalMs: 0 }),
  create: (destination) => new WebhookOutput(destination),
};
