//go:build e2e

// The cross-language suite against a live Persona server (tests/clients/test_sdk_e2e.py runs
// it with PERSONA_TARGET and PERSONA_API_KEY set, as do the TypeScript and Python suites):
// the same calls, the same answers, the same errors in every SDK.
//
//	PERSONA_TARGET=127.0.0.1:50051 PERSONA_API_KEY=... go test -tags e2e ./e2e
package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	persona "github.com/persona-dev/persona/clients/go"
	personav1 "github.com/persona-dev/persona/clients/go/gen/persona/v1"
)

func target(t *testing.T) (string, string) {
	t.Helper()
	addr, key := os.Getenv("PERSONA_TARGET"), os.Getenv("PERSONA_API_KEY")
	if addr == "" || key == "" {
		// Not a skip: this suite is only ever run on purpose, against a server.
		t.Fatal("set PERSONA_TARGET and PERSONA_API_KEY to a live server")
	}
	return addr, key
}

func connect(t *testing.T, key string) *persona.Client {
	t.Helper()
	addr, _ := target(t)
	client, err := persona.New(addr, persona.WithAPIKey(key))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close() })
	return client
}

func user(t *testing.T) string {
	return fmt.Sprintf("e2e-go-%s-%d", strings.ReplaceAll(t.Name(), "/", "-"), time.Now().UnixNano())
}

func asError(t *testing.T, err error) *persona.Error {
	t.Helper()
	var perr *persona.Error
	if !errors.As(err, &perr) {
		t.Fatalf("err = %v (%T), want *persona.Error", err, err)
	}
	return perr
}

func TestIngestThenRecall(t *testing.T) {
	_, key := target(t)
	client, ctx, u := connect(t, key), context.Background(), user(t)
	ingested, err := client.Ingest(ctx, &personav1.IngestRequest{UserId: u, Items: []*personav1.IngestItem{
		{Text: "Caroline went to a LGBTQ support group", SourceId: "D1:3"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if r := ingested.GetResults(); len(r) != 1 || r[0].GetOutcome() != personav1.IngestOutcome_INGEST_OUTCOME_CREATED {
		t.Fatalf("ingest results = %v", r)
	}
	recalled, err := client.Recall(ctx, &personav1.RecallRequest{UserId: u, Query: "support group", MaxResults: 5})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, r := range recalled.GetResults() {
		if slices.Contains(r.GetMemory().GetProvenance().GetSourceIds(), "D1:3") {
			found = true
		}
	}
	if !found {
		t.Fatalf("D1:3 not recalled: %v", recalled.GetResults())
	}
	// The same source id again is recognised, not duplicated.
	again, err := client.Ingest(ctx, &personav1.IngestRequest{UserId: u, Items: []*personav1.IngestItem{
		{Text: "Caroline went to a LGBTQ support group", SourceId: "D1:3"},
	}})
	if err != nil || again.GetResults()[0].GetOutcome() != personav1.IngestOutcome_INGEST_OUTCOME_UNCHANGED {
		t.Fatalf("re-ingest = %v, %v", again, err)
	}
}

func TestInvalidMaxResultsNamesTheField(t *testing.T) {
	_, key := target(t)
	client := connect(t, key)
	_, err := client.Recall(context.Background(), &personav1.RecallRequest{UserId: user(t), Query: "q", MaxResults: 101})
	perr := asError(t, err)
	if perr.Code != codes.InvalidArgument || perr.Reason != "INVALID_ARGUMENT" || perr.Domain != "persona.dev" {
		t.Fatalf("error = %+v", perr)
	}
	if v, ok := perr.Violation("max_results"); !ok || v.Description == "" {
		t.Fatalf("field violations = %+v, want max_results", perr.FieldViolations)
	}
}

func TestBadKeyIsUnauthenticated(t *testing.T) {
	for _, tc := range []struct{ key, reason string }{
		{"", "API_KEY_MISSING"},
		{"not-a-key", "API_KEY_INVALID"},
	} {
		t.Run(tc.reason, func(t *testing.T) {
			client := connect(t, tc.key)
			_, err := client.Recall(context.Background(), &personav1.RecallRequest{UserId: user(t), Query: "q", MaxResults: 5})
			perr := asError(t, err)
			if perr.Code != codes.Unauthenticated || perr.Reason != tc.reason {
				t.Fatalf("error = %+v", perr)
			}
		})
	}
}

func TestGetMissingMemoryIsNotFound(t *testing.T) {
	_, key := target(t)
	client := connect(t, key)
	_, err := client.GetMemory(context.Background(), &personav1.GetMemoryRequest{UserId: user(t), MemoryId: "ep_missing"})
	if perr := asError(t, err); perr.Code != codes.NotFound {
		t.Fatalf("error = %+v", perr)
	}
}

func TestStreamContextSnapshotThenUpdateThenResume(t *testing.T) {
	_, key := target(t)
	client, u := connect(t, key), user(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := client.Ingest(ctx, &personav1.IngestRequest{UserId: u, Items: []*personav1.IngestItem{
		{Text: "I moved to Lisbon in March", SourceId: "s1"},
	}}); err != nil {
		t.Fatal(err)
	}
	stream := client.Subscribe(ctx, &personav1.StreamContextRequest{UserId: u})
	first, err := stream.Recv()
	if err != nil || first.GetSnapshot() == nil || first.GetResumeToken() == "" {
		t.Fatalf("first event = %v, %v; want a snapshot with a resume token", first, err)
	}
	token := stream.ResumeToken()
	stream.Close()

	// Changed while nobody listened: resuming from the token delivers it, with no new snapshot.
	if _, err := client.Ingest(ctx, &personav1.IngestRequest{UserId: u, Items: []*personav1.IngestItem{
		{Text: "I started learning the cello", SourceId: "s2"},
	}}); err != nil {
		t.Fatal(err)
	}
	resumed := client.Subscribe(ctx, &personav1.StreamContextRequest{UserId: u, ResumeToken: token})
	defer resumed.Close()
	for {
		event, err := resumed.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if event.GetSnapshot() != nil {
			t.Fatal("resuming sent a new snapshot")
		}
		update := event.GetUpdate()
		if update == nil {
			continue
		}
		for _, change := range update.GetChanges() {
			if slices.Contains(change.GetResult().GetMemory().GetProvenance().GetSourceIds(), "s2") {
				return
			}
		}
	}
}
