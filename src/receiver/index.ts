/**
 * The audit webhook receiver: HTTPS endpoints for the apiserver's audit webhook, authentication,
 * body limits, backpressure, connection limits and who may read `/metrics`. The only module that
 * imports fastify.
 */
export {
  type AuthResult,
  type AuthTarget,
  authorize,
  type ClientCertificateState,
  type Credentials,
  nativeSignature,
  TokenDigests,
} from './auth.ts';
export {
  CertificateError,
  type ErrorBody,
  RECEIVER_ERRORS,
  ReceiverError,
  type ReceiverErrorCode,
  ReceiverOptionsError,
} from './errors.ts';
export {
  RECEIVER_DEFAULTS,
  type ReceiverOptions,
  type ReceiverOptionsInput,
  type ReceiverTlsFiles,
  validateReceiverOptions,
} from './options.ts';
export {
  ACCESS_CACHE_DEFAULTS,
  type AccessCacheOptions,
  type AccessDecision,
  type AccessReview,
  AccessReviewUnavailable,
  CachedAccessReview,
} from './metrics-access.ts';
export { RECEIVER_ROUTES, startReceiver } from './server.ts';
export type { Receiver, ReceiverLogger } from './types.ts';
