// A scripted MemoryService on a loopback port (connect-node's gRPC server), for unit tests.

import * as http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { ErrorInfoSchema, RetryInfoSchema } from "../src/gen/google/rpc/error_details_pb.js";
import {
  MemoryService,
  type StreamContextRequest,
  StreamContextResponseSchema,
  type StreamContextResponse,
} from "../src/gen/persona/v1/memory_service_pb.js";

export type StreamScript = (
  req: StreamContextRequest,
  ctx: HandlerContext,
) => AsyncIterable<StreamContextResponse>;

export class FakeService {
  readonly failures = new Map<string, Error[]>();
  readonly calls = new Map<string, number>();
  readonly keys: string[] = [];
  readonly timeouts: (number | undefined)[] = [];
  readonly streamRequests: StreamContextRequest[] = [];
  /** StreamContext: one script per connection, in order. */
  readonly streams: StreamScript[] = [];
  /** Resolved each time a stream handler sees its call cancelled by the client. */
  readonly cancelled: Promise<void>;
  #cancelled!: () => void;

  constructor() {
    this.cancelled = new Promise((resolve) => (this.#cancelled = resolve));
  }

  fail(method: string, ...errors: Error[]): void {
    this.failures.set(method, [...(this.failures.get(method) ?? []), ...errors]);
  }

  count(method: string): number {
    return this.calls.get(method) ?? 0;
  }

  #record(method: string, ctx: HandlerContext): void {
    this.calls.set(method, this.count(method) + 1);
    this.keys.push(ctx.requestHeader.get("x-api-key") ?? "");
    this.timeouts.push(ctx.timeoutMs());
    const queue = this.failures.get(method) ?? [];
    const next = queue.shift();
    if (next !== undefined) {
      throw next;
    }
  }

  // Partial: connect answers UNIMPLEMENTED for the RPCs a test does not script.
  impl(): Partial<ServiceImpl<typeof MemoryService>> {
    return {
      recall: (req, ctx) => {
        this.#record("recall", ctx);
        return { contextBlock: `recalled ${req.query}` };
      },
      ingest: (_req, ctx) => {
        this.#record("ingest", ctx);
        return {};
      },
      streamContext: (req, ctx) => {
        this.streamRequests.push(req);
        this.keys.push(ctx.requestHeader.get("x-api-key") ?? "");
        this.timeouts.push(ctx.timeoutMs());
        const script = this.streams[this.streamRequests.length - 1];
        if (script === undefined) {
          throw new ConnectError("no script for this connection", Code.Internal);
        }
        ctx.signal.addEventListener("abort", () => this.#cancelled());
        return script(req, ctx);
      },
    };
  }
}

export class FakeServer {
  readonly #server: http2.Http2Server;
  readonly #sessions = new Set<http2.ServerHttp2Session>();

  private constructor(server: http2.Http2Server) {
    this.#server = server;
    server.on("session", (s) => {
      this.#sessions.add(s);
      s.on("close", () => this.#sessions.delete(s));
    });
  }

  static async start(service: FakeService, port = 0): Promise<FakeServer> {
    const server = http2.createServer(connectNodeAdapter({ routes: (r) => r.service(MemoryService, service.impl()) }));
    await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
    return new FakeServer(server);
  }

  get port(): number {
    return (this.#server.address() as AddressInfo).port;
  }

  get target(): string {
    return `127.0.0.1:${this.port}`;
  }

  /** Stop now: open connections are dropped, as when a server dies. */
  async stop(): Promise<void> {
    for (const s of this.#sessions) {
      s.destroy();
    }
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}

export function unavailable(retryDelayMs?: number): ConnectError {
  const details: ConstructorParameters<typeof ConnectError>[3] = [
    { desc: ErrorInfoSchema, value: { reason: "STORE_UNAVAILABLE", domain: "persona.dev" } },
  ];
  if (retryDelayMs !== undefined) {
    details.push({ desc: RetryInfoSchema, value: { retryDelay: durationFromMs(retryDelayMs) } });
  }
  return new ConnectError("the memory store is unavailable", Code.Unavailable, undefined, details);
}

export function heartbeat(token: string, init: MessageInitShape<typeof StreamContextResponseSchema> = {}): StreamContextResponse {
  return create(StreamContextResponseSchema, {
    resumeToken: token,
    event: { case: "heartbeat", value: {} },
    ...init,
  });
}

export async function* events(...list: StreamContextResponse[]): AsyncIterable<StreamContextResponse> {
  yield* list;
}

export async function* thenFail(
  list: StreamContextResponse[],
  err: Error,
): AsyncIterable<StreamContextResponse> {
  yield* list;
  throw err;
}

/** Sends `list`, then holds the call open until the client (or the server's death) ends it. */
export async function* thenHold(list: StreamContextResponse[], ctx: HandlerContext): AsyncIterable<StreamContextResponse> {
  yield* list;
  await new Promise<void>((resolve) => ctx.signal.addEventListener("abort", () => resolve()));
}
