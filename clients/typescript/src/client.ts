// createPersonaClient: the generated MemoryService client over connect-node's gRPC transport,
// with the call policy every Persona SDK shares.

import type { SecureClientSessionOptions } from "node:http2";
import { setTimeout as sleep } from "node:timers/promises";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { ConnectError, createClient, type Client, type Interceptor, type Transport } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { PersonaError, toPersonaError } from "./errors.js";
import { MemoryService, StreamContextRequestSchema } from "./gen/persona/v1/memory_service_pb.js";
import { Attempts, checkPolicy, DEFAULT_RETRY_POLICY, retrySafe, type RetryPolicy } from "./retry.js";
import { ContextStream, type SubscribeOptions } from "./stream.js";

export const VERSION = "0.1.0";
/** The call metadata that carries the API key. */
export const API_KEY_HEADER = "x-api-key";
/** The deadline of a unary call (its retries included) when the call gives none. */
export const DEFAULT_TIMEOUT_MS = 10_000;

/** TLS settings for `tls`: a custom CA, a client certificate (mutual TLS), and so on. */
export type TlsOptions = Pick<SecureClientSessionOptions, "ca" | "cert" | "key" | "servername" | "rejectUnauthorized">;

export interface PersonaClientOptions {
  /** "host:port" (or a URL: "https://persona.example.com"). */
  readonly target: string;
  /** Sent as `x-api-key` on every call. */
  readonly apiKey?: string;
  /** false (the default, as in the Python SDK and the CLI): plaintext; true: TLS with the system's roots; or TLS options. */
  readonly tls?: boolean | TlsOptions;
  /** Deadline of unary calls that pass no `timeoutMs` (10 s; 0 for none). Streams read with `subscribe` have none. */
  readonly defaultTimeoutMs?: number;
  readonly retry?: RetryPolicy;
  /** Run inside the SDK's policy, once per attempt. */
  readonly interceptors?: readonly Interceptor[];
}

/** Every RPC of MemoryService (generated), plus a resuming StreamContext reader. */
export type PersonaClient = Client<typeof MemoryService> & {
  /**
   * Read a StreamContext subscription that resumes after UNAVAILABLE or a dropped connection
   * with the last resume token: `for await (const event of client.subscribe({ userId }))`.
   */
  subscribe(
    request: MessageInitShape<typeof StreamContextRequestSchema>,
    options?: SubscribeOptions,
  ): ContextStream;
  /** Close the connection (calls still running fail). */
  close(): void;
};

export function createPersonaClient(options: PersonaClientOptions): PersonaClient {
  const retry = checkPolicy(options.retry ?? DEFAULT_RETRY_POLICY);
  const timeoutMs = options.defaultTimeoutMs ?? DEFAULT_TIMEOUT_MS;
  if (!(timeoutMs >= 0)) {
    throw new RangeError(`defaultTimeoutMs must not be negative, got ${timeoutMs}`);
  }
  const tls = options.tls ?? false;
  const baseUrl = options.target.includes("://")
    ? options.target
    : `${tls === false ? "http" : "https"}://${options.target}`;
  const nodeOptions = typeof tls === "object" ? tls : {};
  const sessions = new Http2SessionManager(baseUrl, undefined, nodeOptions);
  const transport: Transport = createGrpcTransport({
    baseUrl,
    sessionManager: sessions,
    nodeOptions,
    ...(timeoutMs === 0 ? {} : { defaultTimeoutMs: timeoutMs }),
    interceptors: [retryInterceptor(retry), apiKeyInterceptor(options.apiKey), ...(options.interceptors ?? [])],
  });
  const client = createClient(MemoryService, transport);
  return Object.assign(withPersonaErrors(client), {
    subscribe: (request: MessageInitShape<typeof StreamContextRequestSchema>, opts?: SubscribeOptions) =>
      new ContextStream(client, request, retry, opts),
    close: () => sessions.abort(),
  }) as PersonaClient;
}

function apiKeyInterceptor(apiKey: string | undefined): Interceptor {
  return (next) => async (req) => {
    if (apiKey) {
      req.header.set(API_KEY_HEADER, apiKey);
    }
    return await next(req);
  };
}

/**
 * Unary calls that are safe to repeat are retried on UNAVAILABLE within their deadline.
 * (StreamContext is resumed by ContextStream, which knows the token.) Interceptors must throw
 * ConnectErrors, so the PersonaError is made at the client's surface, in `withPersonaErrors`.
 */
function retryInterceptor(retry: RetryPolicy): Interceptor {
  return (next) => async (req) => {
    if (req.stream) {
      return await next(req);
    }
    const deadline = deadlineOf(req.header);
    const method = `${req.service.typeName}/${req.method.name}`;
    const attempts = new Attempts(retry, deadline, retrySafe(method, req.message));
    for (;;) {
      try {
        return await next(req);
      } catch (caught) {
        const failure = ConnectError.from(caught);
        const delay = req.signal.aborted ? undefined : attempts.failed(new PersonaError(failure));
        if (delay === undefined) {
          throw failure;
        }
        try {
          await sleep(delay, undefined, { signal: req.signal });
        } catch {
          throw failure; // the deadline or the caller ended the wait: report the last failure
        }
        if (deadline !== undefined) {
          // The next attempt gets what is left of the call's deadline, not a fresh one.
          req.header.set("grpc-timeout", `${Math.max(1, Math.ceil(deadline - Date.now()))}m`);
        }
      }
    }
  };
}

type AnyMethod = (...args: unknown[]) => unknown;

/** The same client whose every method (new RPCs included) fails with PersonaError. */
function withPersonaErrors(client: Client<typeof MemoryService>): Client<typeof MemoryService> {
  const methods = client as unknown as Record<string, AnyMethod>;
  const wrapped: Record<string, AnyMethod> = {};
  for (const method of MemoryService.methods) {
    const call = methods[method.localName];
    if (call === undefined) {
      continue;
    }
    switch (method.methodKind) {
      case "unary":
        wrapped[method.localName] = async (...args) => {
          try {
            return await call(...args);
          } catch (err) {
            throw toPersonaError(err);
          }
        };
        break;
      case "server_streaming":
        wrapped[method.localName] = (...args) => personaErrors(call(...args) as AsyncIterable<unknown>);
        break;
      default:
        wrapped[method.localName] = call;
    }
  }
  return wrapped as unknown as Client<typeof MemoryService>;
}

async function* personaErrors<T>(messages: AsyncIterable<T>): AsyncIterable<T> {
  try {
    yield* messages;
  } catch (err) {
    throw toPersonaError(err);
  }
}

const TIMEOUT_UNITS_MS: Readonly<Record<string, number>> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 1e-3, n: 1e-6 };

/** The call's deadline (Date.now() milliseconds) from the grpc-timeout header the transport set. */
function deadlineOf(header: Headers): number | undefined {
  const match = /^(\d+)([HMSmun])$/.exec(header.get("grpc-timeout") ?? "");
  if (match === null) {
    return undefined;
  }
  return Date.now() + Number(match[1]) * (TIMEOUT_UNITS_MS[match[2] as string] ?? 1);
}
