// The cross-language suite against a live Persona server (tests/clients/test_sdk_e2e.py runs
// it with PERSONA_TARGET and PERSONA_API_KEY set, as do the Go and Python suites): the same
// calls, the same answers, the same errors in every SDK.
//
//   PERSONA_TARGET=127.0.0.1:50051 PERSONA_API_KEY=... npm run test:e2e

import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { Code, createPersonaClient, v1, type PersonaClient } from "../src/index.js";
import { personaFailure } from "../test/assertions.js";

const target = process.env["PERSONA_TARGET"] ?? "";
const apiKey = process.env["PERSONA_API_KEY"] ?? "";
// Not a skip: this suite is only ever run on purpose, against a server.
assert.ok(target !== "" && apiKey !== "", "set PERSONA_TARGET and PERSONA_API_KEY to a live server");

const clients: PersonaClient[] = [];
function connect(key: string): PersonaClient {
  const client = createPersonaClient({ target, apiKey: key });
  clients.push(client);
  return client;
}
after(() => clients.forEach((c) => c.close()));

let users = 0;
const user = () => `e2e-ts-${Date.now()}-${users++}`;

describe("against the live server", () => {
  it("ingests, then recalls with provenance, and recognises a replay", async () => {
    const client = connect(apiKey);
    const userId = user();
    const item = { text: "Caroline went to a LGBTQ support group", sourceId: "D1:3" };
    const ingested = await client.ingest({ userId, items: [item] });
    assert.deepEqual(
      ingested.results.map((r) => r.outcome),
      [v1.IngestOutcome.CREATED],
    );
    const recalled = await client.recall({ userId, query: "support group", maxResults: 5 });
    assert.ok(recalled.results.some((r) => r.memory?.provenance?.sourceIds.includes("D1:3")));
    const again = await client.ingest({ userId, items: [item] });
    assert.equal(again.results[0]?.outcome, v1.IngestOutcome.UNCHANGED);
  });

  it("names max_results in the INVALID_ARGUMENT of an invalid max_results", async () => {
    const err = await personaFailure(connect(apiKey).recall({ userId: user(), query: "q", maxResults: 101 }));
    assert.equal(err.code, Code.InvalidArgument);
    assert.equal(err.codeName, "INVALID_ARGUMENT");
    assert.equal(err.reason, "INVALID_ARGUMENT");
    assert.equal(err.domain, "persona.dev");
    assert.ok(err.violation("max_results")?.description, JSON.stringify(err.fieldViolations));
  });

  it("answers UNAUTHENTICATED to a missing key", async () => {
    const err = await personaFailure(connect("").recall({ userId: user(), query: "q", maxResults: 5 }));
    assert.equal(err.codeName, "UNAUTHENTICATED");
    assert.equal(err.reason, "API_KEY_MISSING");
  });

  it("answers UNAUTHENTICATED to an unknown key", async () => {
    const err = await personaFailure(connect("not-a-key").recall({ userId: user(), query: "q", maxResults: 5 }));
    assert.equal(err.codeName, "UNAUTHENTICATED");
    assert.equal(err.reason, "API_KEY_INVALID");
  });

  it("answers NOT_FOUND for a memory that does not exist", async () => {
    const err = await personaFailure(connect(apiKey).getMemory({ userId: user(), memoryId: "ep_missing" }));
    assert.equal(err.codeName, "NOT_FOUND");
  });

  it("streams a snapshot, then resumes from its token with what changed meanwhile", async () => {
    const client = connect(apiKey);
    const userId = user();
    await client.ingest({ userId, items: [{ text: "I moved to Lisbon in March", sourceId: "s1" }] });
    const stream = client.subscribe({ userId }, { timeoutMs: 30_000 });
    for await (const event of stream) {
      assert.equal(event.event.case, "snapshot");
      assert.notEqual(event.resumeToken, "");
      break;
    }
    const token = stream.resumeToken;
    // Changed while nobody listened: resuming from the token delivers it, with no new snapshot.
    await client.ingest({ userId, items: [{ text: "I started learning the cello", sourceId: "s2" }] });
    for await (const event of client.subscribe({ userId, resumeToken: token }, { timeoutMs: 30_000 })) {
      assert.notEqual(event.event.case, "snapshot", "resuming sent a new snapshot");
      if (
        event.event.case === "update" &&
        event.event.value.changes.some((c) => c.result?.memory?.provenance?.sourceIds.includes("s2"))
      ) {
        return;
      }
    }
    assert.fail("the stream ended before the update");
  });
});
