// The TypeScript quickstart: ingest a memory, recall it, and read one StreamContext update.
//
//   PERSONA_TARGET=127.0.0.1:50051 PERSONA_API_KEY=... npm run quickstart
//
// PERSONA_TLS=1 connects with TLS (the system's root certificates); the default is plaintext.
// Outside this repository, import from "@persona-dev/sdk" instead of "../src/index.js".

import { createPersonaClient, memory, PersonaError, v1 } from "../src/index.js";

async function main(): Promise<void> {
  const client = createPersonaClient({
    target: process.env["PERSONA_TARGET"] || "127.0.0.1:50051",
    apiKey: process.env["PERSONA_API_KEY"] ?? "",
    tls: process.env["PERSONA_TLS"] === "1",
  });
  // A fresh user per run, so the second ingest is always new and always streamed.
  const userId = `quickstart-ts-${Date.now()}`;
  console.log(`user: ${userId}`);
  try {
    const ingested = await client.ingest({
      userId,
      items: [{ text: "I moved to Lisbon in March", sourceId: "msg-1" }],
    });
    for (const r of ingested.results) {
      console.log(`ingested: ${r.sourceId} ${r.episodeId} ${v1.IngestOutcome[r.outcome]}`);
    }

    const recalled = await client.recall({ userId, query: "where does the user live", maxResults: 5 });
    for (const r of recalled.results) {
      console.log(
        `recalled: ${r.score.toFixed(3)} ${memory.MemoryType[r.memory?.type ?? 0]} ${JSON.stringify(r.memory?.text)}`,
      );
      // A passage: the other memories of the same sitting, or the episode a fact came from.
      for (const j of r.joined) {
        console.log(`  with: ${memory.MemoryType[j.type]} ${JSON.stringify(j.text)}`);
      }
    }

    // The first event is the snapshot; once it has arrived the subscription sees every later
    // change, so the second ingest comes back as an update.
    const stream = client.subscribe({ userId }, { timeoutMs: 60_000 });
    let ingestedSecond = false;
    for await (const event of stream) {
      if (event.event.case === "snapshot") {
        console.log(`snapshot: ${event.event.value.results.length} memories`);
      }
      if (!ingestedSecond) {
        ingestedSecond = true;
        await client.ingest({ userId, items: [{ text: "I started learning the cello", sourceId: "msg-2" }] });
        continue;
      }
      if (event.event.case !== "update") {
        continue; // a heartbeat (or an event kind this quickstart does not use)
      }
      for (const change of event.event.value.changes) {
        const m = change.result?.memory;
        console.log(`update: ${v1.ChangeKind[change.kind]} ${memory.MemoryType[m?.type ?? 0]} ${JSON.stringify(m?.text)}`);
      }
      break; // leaving the loop cancels the subscription
    }
  } finally {
    client.close();
  }
}

main().catch((err: unknown) => {
  if (err instanceof PersonaError) {
    console.error(`quickstart: ${err.message} (reason ${err.reason})`);
  } else {
    console.error("quickstart:", err);
  }
  process.exit(1);
});
