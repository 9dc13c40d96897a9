// The Persona TypeScript SDK. The generated messages are re-exported as `v1` (and the error
// detail messages as `rpc`), so one import gives everything.

export {
  API_KEY_HEADER,
  createPersonaClient,
  DEFAULT_TIMEOUT_MS,
  VERSION,
  type PersonaClient,
  type PersonaClientOptions,
  type TlsOptions,
} from "./client.js";
export { codeNameOf, PersonaError, toPersonaError, type FieldViolation, type RawDetail } from "./errors.js";
export { backoffMs, DEFAULT_RETRY_POLICY, NO_RETRY, retrySafe, type RetryPolicy } from "./retry.js";
export { ContextStream, type SubscribeOptions } from "./stream.js";
export { Code } from "@connectrpc/connect";
export * as v1 from "./gen/persona/v1/memory_service_pb.js";
export * as memory from "./gen/persona/v1/memory_pb.js";
export * as rpc from "./gen/google/rpc/error_details_pb.js";
