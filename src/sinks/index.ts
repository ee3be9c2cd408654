/** Sinks: the model built from AuditSink and AuditPipeline resources, and the router. Pure. */
export {
  carriesCredentials,
  type DropReason,
  routeEvent,
  type RoutingSettings,
  type SinkOutcome,
} from './router.ts';
export {
  INFLUX_DEFAULTS,
  SINK_API_VERSION,
  type SinkSettings,
  SinkSpecError,
  sinkFromResource,
  THROTTLE_DEFAULTS,
} from './spec.ts';
export * from './types.ts';
