/** Sinks: the model built from AuditSink and AuditPipeline resources, and the router. Pure. */
export {
  carriesCredentials,
  type DropReason,
  routeEvent,
  type RoutingSettings,
  type SinkOutcome,
} from './router.ts';
export { SINK_API_VERSION, type SinkSettings, SinkSpecError, sinkFromResource } from './spec.ts';
export * from './types.ts';
