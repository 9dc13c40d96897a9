import assert from "node:assert/strict";
import { afterEach, describe, it } from "node:test";
import { WireType } from "@bufbuild/protobuf/wire";
import { Code, ConnectError } from "@connectrpc/connect";
import { createPersonaClient, DEFAULT_RETRY_POLICY, PersonaError, type PersonaClient } from "../src/index.js";
import { events, FakeServer, FakeService, heartbeat, thenFail, thenHold, unavailable } from "./fake-server.js";

const FAST = { ...DEFAULT_RETRY_POLICY, initialBackoffMs: 5, maxBackoffMs: 20 };

describe("subscribe", () => {
  const cleanups: (() => Promise<void> | void)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) {
      await c();
    }
  });

  async function setUp(service: FakeService, retry = FAST): Promise<{ server: FakeServer; client: PersonaClient }> {
    const server = await FakeServer.start(service);
    const client = createPersonaClient({ target: server.target, apiKey: "k1", retry });
    cleanups.push(() => server.stop(), () => client.close());
    return { server, client };
  }

  it("resumes with the last token after UNAVAILABLE, missing and repeating nothing", async () => {
    const service = new FakeService();
    service.streams.push(
      () => thenFail([heartbeat("t1"), heartbeat("t2")], unavailable()),
      () => thenFail([heartbeat("t3")], unavailable()),
      () => events(heartbeat("t4")),
    );
    const { client } = await setUp(service);
    const stream = client.subscribe({ userId: "u", query: "q" });
    const tokens: string[] = [];
    for await (const event of stream) {
      tokens.push(event.resumeToken);
    }
    assert.deepEqual(tokens, ["t1", "t2", "t3", "t4"]);
    assert.deepEqual(
      service.streamRequests.map((r) => [r.resumeToken, r.query, r.userId]),
      [["", "q", "u"], ["t2", "q", "u"], ["t3", "q", "u"]],
    );
    assert.equal(stream.resumeToken, "t4");
    assert.deepEqual(service.keys, ["k1", "k1", "k1"]);
    // A subscription has no deadline unless it asks for one.
    assert.deepEqual(service.timeouts, [undefined, undefined, undefined]);
  });

  it("gives up after an outage that lasts", async () => {
    const service = new FakeService();
    for (let i = 0; i <= FAST.maxAttempts; i++) {
      service.streams.push(() => thenFail([], unavailable()));
    }
    const { client } = await setUp(service);
    await assert.rejects(
      async () => {
        for await (const _ of client.subscribe({ userId: "u" })) {
          assert.fail("no event was sent");
        }
      },
      (err: unknown) => err instanceof PersonaError && err.code === Code.Unavailable,
    );
    assert.equal(service.streamRequests.length, FAST.maxAttempts);
  });

  it("ends on an error other than UNAVAILABLE", async () => {
    const service = new FakeService();
    service.streams.push(() => thenFail([], new ConnectError("no", Code.PermissionDenied)));
    const { client } = await setUp(service);
    await assert.rejects(
      async () => {
        for await (const _ of client.subscribe({ userId: "u" })) {
          assert.fail("no event was sent");
        }
      },
      (err: unknown) => err instanceof PersonaError && err.codeName === "PERMISSION_DENIED",
    );
    assert.equal(service.streamRequests.length, 1);
  });

  it("passes an event kind it does not know through to the caller", async () => {
    // A newer server may send an event case this SDK was not generated with (field 9 here).
    const future = heartbeat("t1", { event: { case: undefined } });
    future.$unknown = [{ no: 9, wireType: WireType.LengthDelimited, data: new Uint8Array([0x02, 0x08, 0x01]) }];
    const service = new FakeService();
    service.streams.push(() => events(future, heartbeat("t2")));
    const { client } = await setUp(service);
    const seen = [];
    for await (const event of client.subscribe({ userId: "u" })) {
      seen.push(event);
    }
    assert.equal(seen.length, 2);
    assert.equal(seen[0]?.event.case, undefined);
    assert.equal(seen[0]?.resumeToken, "t1");
    assert.equal(seen[0]?.$unknown?.[0]?.no, 9);
    assert.equal(seen[1]?.event.case, "heartbeat");
  });

  it("survives a server restart (a dropped connection)", async () => {
    const service = new FakeService();
    service.streams.push(
      (_req, ctx) => thenHold([heartbeat("t1")], ctx),
      () => events(heartbeat("t2")),
    );
    const first = await FakeServer.start(service);
    const client = createPersonaClient({
      target: first.target,
      retry: { maxAttempts: 10, initialBackoffMs: 50, maxBackoffMs: 200, multiplier: 2 },
    });
    cleanups.push(() => client.close());
    const tokens: string[] = [];
    let second: FakeServer | undefined;
    for await (const event of client.subscribe({ userId: "u" })) {
      tokens.push(event.resumeToken);
      if (second === undefined) {
        const port = first.port;
        await first.stop();
        second = await FakeServer.start(service, port);
        cleanups.push(() => second?.stop());
      }
    }
    assert.deepEqual(tokens, ["t1", "t2"]);
    assert.equal(service.streamRequests.at(-1)?.resumeToken, "t1");
  });

  it("cancels the call when the consumer leaves the loop", async () => {
    const service = new FakeService();
    service.streams.push((_req, ctx) => thenHold([heartbeat("t1")], ctx));
    const { client } = await setUp(service);
    for await (const event of client.subscribe({ userId: "u" })) {
      assert.equal(event.resumeToken, "t1");
      break;
    }
    await service.cancelled; // the test times out if the server never sees it
  });

  it("ends quietly on close()", async () => {
    const service = new FakeService();
    service.streams.push((_req, ctx) => thenHold([heartbeat("t1")], ctx));
    const { client } = await setUp(service);
    const stream = client.subscribe({ userId: "u" });
    const tokens: string[] = [];
    for await (const event of stream) {
      tokens.push(event.resumeToken);
      setTimeout(() => stream.close(), 20);
    }
    assert.deepEqual(tokens, ["t1"]);
    await service.cancelled;
  });

  it("bounds the subscription by timeoutMs, and tells the server", async () => {
    const service = new FakeService();
    service.streams.push((_req, ctx) => thenHold([heartbeat("t1")], ctx));
    const { client } = await setUp(service);
    await assert.rejects(
      async () => {
        for await (const _ of client.subscribe({ userId: "u" }, { timeoutMs: 300 })) {
          // wait for the deadline
        }
      },
      (err: unknown) => err instanceof PersonaError && err.code === Code.DeadlineExceeded,
    );
    const sent = service.timeouts[0];
    assert.ok(sent !== undefined && sent > 0 && sent <= 300, `grpc-timeout seen: ${sent}`);
  });
});
