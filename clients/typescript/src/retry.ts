// The retry policy, the same as the Python and Go SDKs': only UNAVAILABLE, only for calls that
// are safe to repeat, exponential backoff with full jitter, never past the call's deadline.

import { Code } from "@connectrpc/connect";
import type { PersonaError } from "./errors.js";
import { MemoryService, type IngestRequest } from "./gen/persona/v1/memory_service_pb.js";

/**
 * Exponential backoff with full jitter (gRPC's own retry design, A6). The n-th retry waits a
 * random time in [0, min(initialBackoffMs * multiplier^(n-1), maxBackoffMs)], never less than
 * the server's RetryInfo.retry_delay, and is not attempted when it could not finish before
 * the deadline. `maxAttempts` counts the first attempt: 1 disables retries.
 */
export interface RetryPolicy {
  readonly maxAttempts: number;
  readonly initialBackoffMs: number;
  readonly maxBackoffMs: number;
  readonly multiplier: number;
}

export const DEFAULT_RETRY_POLICY: RetryPolicy = Object.freeze({
  maxAttempts: 3,
  initialBackoffMs: 200,
  maxBackoffMs: 5000,
  multiplier: 2,
});

export const NO_RETRY: RetryPolicy = Object.freeze({ ...DEFAULT_RETRY_POLICY, maxAttempts: 1 });

export function checkPolicy(p: RetryPolicy): RetryPolicy {
  if (!Number.isInteger(p.maxAttempts) || p.maxAttempts < 1) {
    throw new RangeError(`retry.maxAttempts must be an integer of at least 1, got ${p.maxAttempts}`);
  }
  if (p.initialBackoffMs < 0 || p.maxBackoffMs < 0) {
    throw new RangeError("retry backoffs must not be negative");
  }
  if (p.multiplier < 1) {
    throw new RangeError(`retry.multiplier must be at least 1, got ${p.multiplier}`);
  }
  return p;
}

/** The jittered wait before retry `n` (1 for the first retry); `rand` returns [0, 1). */
export function backoffMs(p: RetryPolicy, n: number, rand: () => number = Math.random): number {
  return Math.min(p.initialBackoffMs * p.multiplier ** (n - 1), p.maxBackoffMs) * rand();
}

/** The retry state of one logical call, or of one subscription (reset by every event). */
export class Attempts {
  #failures = 0;

  constructor(
    private readonly policy: RetryPolicy,
    private readonly deadline: number | undefined, // Date.now() milliseconds
    private readonly retrySafe: boolean,
    private readonly rand: () => number = Math.random,
  ) {}

  succeeded(): void {
    this.#failures = 0;
  }

  /**
   * Milliseconds to wait before the next attempt, or undefined to give up with `err`.
   * `dropped` says the failure was a lost connection, retried like UNAVAILABLE whatever its code.
   */
  failed(err: PersonaError, now: number = Date.now(), dropped = false): number | undefined {
    this.#failures += 1;
    const unavailable = dropped || err.code === Code.Unavailable;
    if (!this.retrySafe || !unavailable || this.#failures >= this.policy.maxAttempts) {
      return undefined;
    }
    let delay = backoffMs(this.policy, this.#failures, this.rand);
    if (err.retryDelayMs !== undefined) {
      delay = Math.max(delay, err.retryDelayMs);
    }
    if (this.deadline !== undefined && delay >= this.deadline - now) {
      return undefined; // the retry could not finish before the deadline: fail now, honestly
    }
    return delay;
  }
}

const SERVICE = MemoryService.typeName;

// The RPCs that may be repeated after UNAVAILABLE: those without side effects and the
// idempotent deletes (deleting twice leaves the same state; the replay may answer NOT_FOUND).
// A method missing here, such as one added to the protos later, is never retried.
const RETRY_SAFE = new Set(
  [
    "Recall",
    "AskStructured",
    "StreamContext",
    "GetMemory",
    "ListMemories",
    "DeleteMemory",
    "DeleteUser",
    "GetProfile",
    "PutKnowledgeSchema", // an upsert: putting the same schema twice is one schema
    "ListKnowledgeSchemas",
    "DeleteKnowledgeSchema",
    "GetKnowledge",
  ].map(
    (m) => `${SERVICE}/${m}`,
  ),
);

/**
 * Whether a call of `method` ("persona.v1.MemoryService/Recall") with this request may be
 * retried. Ingest is safe only when every item has a source id: the server then recognises a
 * replay (UNCHANGED) instead of storing a second episode.
 */
export function retrySafe(method: string, request: unknown): boolean {
  if (method === `${SERVICE}/Ingest`) {
    const items = (request as IngestRequest).items ?? [];
    return items.length > 0 && items.every((item) => item.sourceId !== "");
  }
  return RETRY_SAFE.has(method);
}
