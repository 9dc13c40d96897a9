// The Go quickstart: ingest a memory, recall it, and read one StreamContext update.
//
//	PERSONA_TARGET=127.0.0.1:50051 PERSONA_API_KEY=... go run ./examples/quickstart
//
// PERSONA_TLS=1 dials with TLS (the system's root certificates); the default is plaintext.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	persona "github.com/persona-dev/persona/clients/go"
	personav1 "github.com/persona-dev/persona/clients/go/gen/persona/v1"
)

func main() {
	if err := run(); err != nil {
		var perr *persona.Error
		if errors.As(err, &perr) {
			fmt.Fprintf(os.Stderr, "quickstart: %s (reason %s)\n", perr, perr.Reason)
		} else {
			fmt.Fprintln(os.Stderr, "quickstart:", err)
		}
		os.Exit(1)
	}
}

func run() error {
	target := os.Getenv("PERSONA_TARGET")
	if target == "" {
		target = "127.0.0.1:50051"
	}
	opts := []persona.Option{persona.WithAPIKey(os.Getenv("PERSONA_API_KEY"))}
	if os.Getenv("PERSONA_TLS") == "1" {
		opts = append(opts, persona.WithTLS(nil))
	}
	client, err := persona.New(target, opts...)
	if err != nil {
		return err
	}
	defer client.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// A fresh user per run, so the second ingest is always new and always streamed.
	user := fmt.Sprintf("quickstart-go-%d", time.Now().UnixNano())
	fmt.Println("user:", user)

	ingested, err := client.Ingest(ctx, &personav1.IngestRequest{
		UserId: user,
		Items:  []*personav1.IngestItem{{Text: "I moved to Lisbon in March", SourceId: "msg-1"}},
	})
	if err != nil {
		return err
	}
	for _, r := range ingested.GetResults() {
		fmt.Printf("ingested: %s %s %s\n", r.GetSourceId(), r.GetEpisodeId(), r.GetOutcome())
	}

	recalled, err := client.Recall(ctx, &personav1.RecallRequest{
		UserId: user, Query: "where does the user live", MaxResults: 5,
	})
	if err != nil {
		return err
	}
	for _, r := range recalled.GetResults() {
		fmt.Printf("recalled: %.3f %s %q\n", r.GetScore(), r.GetMemory().GetType(), r.GetMemory().GetText())
		// A passage: the other memories of the same sitting, or the episode a fact came from.
		for _, j := range r.GetJoined() {
			fmt.Printf("  with: %s %q\n", j.GetType(), j.GetText())
		}
	}

	// The first event is the snapshot; once it has arrived the subscription sees every later
	// change, so the second ingest comes back as an update.
	stream := client.Subscribe(ctx, &personav1.StreamContextRequest{UserId: user})
	defer stream.Close()
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	fmt.Printf("snapshot: %d memories\n", len(first.GetSnapshot().GetResults()))
	if _, err := client.Ingest(ctx, &personav1.IngestRequest{
		UserId: user,
		Items:  []*personav1.IngestItem{{Text: "I started learning the cello", SourceId: "msg-2"}},
	}); err != nil {
		return err
	}
	for {
		event, err := stream.Recv()
		if err != nil {
			return err
		}
		update := event.GetUpdate()
		if update == nil {
			continue // a heartbeat (or an event kind this quickstart does not use)
		}
		for _, change := range update.GetChanges() {
			m := change.GetResult().GetMemory()
			fmt.Printf("update: %s %s %q\n", change.GetKind(), m.GetType(), m.GetText())
		}
		return nil
	}
}
