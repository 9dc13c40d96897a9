// ContextStream: a StreamContext subscription that survives dropped connections.

import { setTimeout as sleep } from "node:timers/promises";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { type Client, Code, ConnectError } from "@connectrpc/connect";
import { PersonaError, toPersonaError } from "./errors.js";
import {
  type MemoryService,
  type StreamContextResponse,
  StreamContextRequestSchema,
} from "./gen/persona/v1/memory_service_pb.js";
import { Attempts, type RetryPolicy } from "./retry.js";

export interface SubscribeOptions {
  /** Aborting it ends the subscription with a CANCELLED PersonaError. */
  readonly signal?: AbortSignal;
  /** Bounds the whole subscription, reconnections included. None by default. */
  readonly timeoutMs?: number;
}

/**
 * The events of one StreamContext subscription, as an async iterable. After UNAVAILABLE or a
 * dropped connection (which connect-node reports as CANCELLED) it waits (the client's retry policy and backoff, honouring
 * RetryInfo) and reconnects with the resume token of the last event it yielded, so the server
 * sends what changed since instead of a new snapshot: nothing is missed or repeated. Every event
 * received resets the retry budget: a long-lived stream survives many separate outages, not one
 * that lasts.
 *
 * Events are yielded as the server sent them, whatever their kind: an event case this SDK does
 * not know yet (a newer server) reaches the caller with `event.event.case === undefined`.
 * Leaving the loop, or `close()`, cancels the call. Iterating again resumes after the last event.
 */
export class ContextStream implements AsyncIterable<StreamContextResponse> {
  readonly #client: Client<typeof MemoryService>;
  readonly #request: MessageInitShape<typeof StreamContextRequestSchema>;
  readonly #retry: RetryPolicy;
  readonly #options: SubscribeOptions;
  readonly #closed = new AbortController();
  #resumeToken: string;

  constructor(
    client: Client<typeof MemoryService>,
    request: MessageInitShape<typeof StreamContextRequestSchema>,
    retry: RetryPolicy,
    options: SubscribeOptions = {},
  ) {
    this.#client = client;
    this.#request = request;
    this.#retry = retry;
    this.#options = options;
    this.#resumeToken = request.resumeToken ?? "";
  }

  /** The token of the last event yielded: pass it as `resumeToken` to resume later. */
  get resumeToken(): string {
    return this.#resumeToken;
  }

  /** End the subscription now; a loop waiting for an event ends without an error. */
  close(): void {
    this.#closed.abort();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<StreamContextResponse> {
    const timeoutMs = this.#options.timeoutMs;
    const deadline = timeoutMs === undefined ? undefined : Date.now() + timeoutMs;
    // The deadline is enforced here rather than by connect's timeoutMs, whose timer outlives a
    // consumer that leaves the loop early (and keeps the process alive until it fires).
    const expired = timeoutMs === undefined ? undefined : AbortSignal.timeout(timeoutMs);
    // connect's iterables ignore return(): leaving the loop must abort the call explicitly.
    const left = new AbortController();
    const signals = [this.#closed.signal, left.signal];
    for (const s of [this.#options.signal, expired]) {
      if (s !== undefined) {
        signals.push(s);
      }
    }
    const signal = AbortSignal.any(signals);
    const attempts = new Attempts(this.#retry, deadline, true);
    try {
      yield* this.#events(signal, deadline, expired, attempts);
    } finally {
      left.abort();
    }
  }

  async *#events(
    signal: AbortSignal,
    deadline: number | undefined,
    expired: AbortSignal | undefined,
    attempts: Attempts,
  ): AsyncGenerator<StreamContextResponse> {
    for (;;) {
      const request = create(StreamContextRequestSchema, {
        ...this.#request,
        resumeToken: this.#resumeToken,
      });
      try {
        const events = this.#client.streamContext(request, {
          signal,
          timeoutMs: 0, // none from connect (not the client's default for unary calls)
          ...(deadline === undefined
            ? {}
            : { headers: { "grpc-timeout": `${Math.max(1, Math.ceil(deadline - Date.now()))}m` } }),
        });
        for await (const event of events) {
          if (event.resumeToken !== "") {
            this.#resumeToken = event.resumeToken;
          }
          attempts.succeeded();
          yield event;
        }
        return; // the server ended the subscription
      } catch (caught) {
        if (this.#closed.signal.aborted) {
          return;
        }
        if (expired?.aborted) {
          throw deadlineExceeded();
        }
        const err = toPersonaError(caught);
        // connect-node reports a connection the server dropped (it died, or cancelled our call
        // on its way down) as CANCELLED; the caller did not cancel, so it is an outage.
        const dropped = err instanceof PersonaError && err.code === Code.Canceled;
        const delay =
          err instanceof PersonaError && !signal.aborted ? attempts.failed(err, Date.now(), dropped) : undefined;
        if (delay === undefined) {
          throw err;
        }
        try {
          await sleep(delay, undefined, { signal });
        } catch {
          if (this.#closed.signal.aborted) {
            return;
          }
          throw expired?.aborted ? deadlineExceeded() : err;
        }
      }
    }
  }
}

function deadlineExceeded(): PersonaError {
  return new PersonaError(new ConnectError("the subscription's deadline passed", Code.DeadlineExceeded));
}
