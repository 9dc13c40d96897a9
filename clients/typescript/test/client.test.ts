import assert from "node:assert/strict";
import { after, before, beforeEach, describe, it } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  backoffMs,
  createPersonaClient,
  DEFAULT_RETRY_POLICY,
  NO_RETRY,
  retrySafe,
  type PersonaClient,
} from "../src/index.js";
import { BadRequestSchema, ErrorInfoSchema } from "../src/gen/google/rpc/error_details_pb.js";
import { personaFailure } from "./assertions.js";
import { FakeServer, FakeService, unavailable } from "./fake-server.js";

const FAST = { ...DEFAULT_RETRY_POLICY, initialBackoffMs: 5, maxBackoffMs: 20 };

describe("unary calls", () => {
  let service: FakeService;
  let server: FakeServer;
  let client: PersonaClient;

  before(async () => {
    service = new FakeService();
    server = await FakeServer.start(service);
  });
  after(async () => {
    await server.stop();
  });
  beforeEach(() => {
    service.failures.clear();
    service.calls.clear();
    service.keys.length = 0;
    service.timeouts.length = 0;
    client?.close();
    client = createPersonaClient({ target: server.target, apiKey: "k1", retry: FAST, defaultTimeoutMs: 3000 });
  });

  it("sends the API key and the default deadline", async () => {
    const res = await client.recall({ userId: "u", query: "q" });
    assert.equal(res.contextBlock, "recalled q");
    assert.deepEqual(service.keys, ["k1"]);
    const timeout = service.timeouts[0];
    assert.ok(timeout !== undefined && timeout > 0 && timeout <= 3000, `deadline ${timeout}`);
  });

  it("lets a call's own timeout win", async () => {
    await client.recall({ userId: "u" }, { timeoutMs: 60_000 });
    assert.ok((service.timeouts[0] ?? 0) > 30_000);
  });

  it("retries UNAVAILABLE for Recall, waiting at least the server's RetryInfo", async () => {
    service.fail("recall", unavailable(), unavailable(150));
    const started = Date.now();
    await client.recall({ userId: "u" });
    assert.equal(service.count("recall"), 3);
    assert.ok(Date.now() - started >= 150, "the RetryInfo delay was not honoured");
    // Every attempt carries the key, and later attempts get what is left of the deadline.
    assert.deepEqual(service.keys, ["k1", "k1", "k1"]);
    const [first, , third] = service.timeouts;
    assert.ok(first !== undefined && third !== undefined && third < first);
  });

  it("stops after maxAttempts", async () => {
    service.fail("recall", unavailable(), unavailable(), unavailable(), unavailable());
    const err = await personaFailure(client.recall({ userId: "u" }));
    assert.equal(err.code, Code.Unavailable);
    assert.equal(err.reason, "STORE_UNAVAILABLE");
    assert.equal(service.count("recall"), FAST.maxAttempts);
  });

  it("does not retry when RetryInfo outlasts the deadline", async () => {
    service.fail("recall", unavailable(60_000));
    const err = await personaFailure(client.recall({ userId: "u" }));
    assert.equal(err.code, Code.Unavailable);
    assert.equal(err.retryDelayMs, 60_000);
    assert.equal(service.count("recall"), 1);
  });

  it("retries Ingest only when every item has a source id", async () => {
    service.fail("ingest", unavailable());
    const err = await personaFailure(
      client.ingest({ userId: "u", items: [{ text: "a", sourceId: "s1" }, { text: "b" }] }),
    );
    assert.equal(err.code, Code.Unavailable);
    assert.equal(service.count("ingest"), 1);

    service.fail("ingest", unavailable());
    await client.ingest({ userId: "u", items: [{ text: "a", sourceId: "s1" }, { text: "b", sourceId: "s2" }] });
    assert.equal(service.count("ingest"), 3);
  });

  it("does not retry other codes", async () => {
    service.fail("recall", new ConnectError("boom", Code.Internal));
    const err = await personaFailure(client.recall({ userId: "u" }));
    assert.equal(err.codeName, "INTERNAL");
    assert.equal(service.count("recall"), 1);
  });

  it("exposes ErrorInfo and BadRequest field violations", async () => {
    const message = "max_results must be between 1 and 100, got 0";
    service.fail(
      "recall",
      new ConnectError(message, Code.InvalidArgument, undefined, [
        { desc: ErrorInfoSchema, value: { reason: "INVALID_ARGUMENT", domain: "persona.dev", metadata: { k: "v" } } },
        { desc: BadRequestSchema, value: { fieldViolations: [{ field: "max_results", description: message }] } },
      ]),
    );
    const err = await personaFailure(client.recall({ userId: "u" }));
    assert.equal(err.code, Code.InvalidArgument);
    assert.equal(err.codeName, "INVALID_ARGUMENT");
    assert.equal(err.reason, "INVALID_ARGUMENT");
    assert.equal(err.domain, "persona.dev");
    assert.deepEqual(err.metadata, { k: "v" });
    assert.deepEqual(err.violation("max_results"), { field: "max_results", description: message });
    assert.equal(err.message, `INVALID_ARGUMENT: ${message}`);
    assert.equal(err.rawMessage, message);
    assert.equal(err.details.length, 2);
    assert.ok(err.cause instanceof ConnectError);
  });

  it("names the code as the reason of a transport failure", async () => {
    const nowhere = createPersonaClient({ target: "127.0.0.1:1", retry: NO_RETRY });
    try {
      const err = await personaFailure(nowhere.recall({ userId: "u" }));
      assert.equal(err.code, Code.Unavailable);
      assert.equal(err.reason, "UNAVAILABLE");
    } finally {
      nowhere.close();
    }
  });
});

describe("policy", () => {
  it("computes bounded, growing backoffs", () => {
    const one = () => 0.999999;
    assert.ok(Math.abs(backoffMs(DEFAULT_RETRY_POLICY, 1, one) - 200) < 1);
    assert.ok(Math.abs(backoffMs(DEFAULT_RETRY_POLICY, 3, one) - 800) < 1);
    assert.ok(backoffMs(DEFAULT_RETRY_POLICY, 30, one) <= DEFAULT_RETRY_POLICY.maxBackoffMs);
  });

  it("knows which calls are safe to repeat", () => {
    assert.equal(retrySafe("persona.v1.MemoryService/Recall", {}), true);
    assert.equal(retrySafe("persona.v1.MemoryService/DeleteUser", {}), true);
    assert.equal(retrySafe("persona.v1.MemoryService/SomeFutureWrite", {}), false);
    assert.equal(retrySafe("persona.v1.MemoryService/Ingest", { items: [] }), false);
  });

  it("rejects bad options", () => {
    assert.throws(() => createPersonaClient({ target: "x:1", retry: { ...NO_RETRY, maxAttempts: 0 } }), RangeError);
    assert.throws(() => createPersonaClient({ target: "x:1", defaultTimeoutMs: -1 }), RangeError);
  });
});
