package persona

import (
	"context"
	"errors"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	personav1 "github.com/persona-dev/persona/clients/go/gen/persona/v1"
)

func TestAPIKeyAndDefaultDeadlineAreSent(t *testing.T) {
	svc := newFakeService()
	srv := startFake(t, svc, "")
	client, _ := newTestClient(t, srv.addr, WithDefaultTimeout(3*time.Second))

	resp, err := client.Recall(context.Background(), &personav1.RecallRequest{UserId: "u", Query: "q"})
	if err != nil {
		t.Fatalf("Recall: %v", err)
	}
	if resp.GetContextBlock() != "recalled q" {
		t.Fatalf("response = %q", resp.GetContextBlock())
	}
	if svc.keys[0] != "k1" {
		t.Fatalf("x-api-key = %q, want k1", svc.keys[0])
	}
	if d := svc.deadlines[0]; d <= 0 || d > 3*time.Second {
		t.Fatalf("deadline seen by the server = %v, want within (0, 3s]", d)
	}
}

func TestCallerDeadlineWins(t *testing.T) {
	svc := newFakeService()
	srv := startFake(t, svc, "")
	client, _ := newTestClient(t, srv.addr)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := client.Recall(ctx, &personav1.RecallRequest{UserId: "u"}); err != nil {
		t.Fatal(err)
	}
	if d := svc.deadlines[0]; d < 30*time.Second {
		t.Fatalf("deadline = %v, want the caller's minute", d)
	}
}

func TestUnavailableIsRetriedForRecallHonouringRetryInfo(t *testing.T) {
	svc := newFakeService()
	svc.fail("Recall", unavailable(0), unavailable(700*time.Millisecond))
	srv := startFake(t, svc, "")
	client, waits := newTestClient(t, srv.addr)

	if _, err := client.Recall(context.Background(), &personav1.RecallRequest{UserId: "u"}); err != nil {
		t.Fatalf("Recall after two UNAVAILABLE: %v", err)
	}
	if got := svc.count("Recall"); got != 3 {
		t.Fatalf("attempts = %d, want 3", got)
	}
	if len(*waits) != 2 || (*waits)[0] > DefaultRetryPolicy.InitialBackoff || (*waits)[1] < 700*time.Millisecond {
		t.Fatalf("waits = %v, want <=200ms then the server's 700ms", *waits)
	}
}

func TestRetriesStopAtMaxAttempts(t *testing.T) {
	svc := newFakeService()
	svc.fail("Recall", unavailable(0), unavailable(0), unavailable(0), unavailable(0))
	srv := startFake(t, svc, "")
	client, _ := newTestClient(t, srv.addr)

	_, err := client.Recall(context.Background(), &personav1.RecallRequest{UserId: "u"})
	var perr *Error
	if !errors.As(err, &perr) || perr.Code != codes.Unavailable || perr.Reason != "STORE_UNAVAILABLE" {
		t.Fatalf("err = %#v, want UNAVAILABLE STORE_UNAVAILABLE", err)
	}
	if got := svc.count("Recall"); got != DefaultRetryPolicy.MaxAttempts {
		t.Fatalf("attempts = %d, want %d", got, DefaultRetryPolicy.MaxAttempts)
	}
}

func TestNoRetryWhenRetryInfoOutlastsTheDeadline(t *testing.T) {
	svc := newFakeService()
	svc.fail("Recall", unavailable(time.Hour))
	srv := startFake(t, svc, "")
	client, waits := newTestClient(t, srv.addr)

	_, err := client.Recall(context.Background(), &personav1.RecallRequest{UserId: "u"})
	if status.Code(err) != codes.Unavailable || svc.count("Recall") != 1 || len(*waits) != 0 {
		t.Fatalf("err=%v attempts=%d waits=%v: want one attempt and no wait", err, svc.count("Recall"), *waits)
	}
}

func TestIngestIsRetriedOnlyWhenEveryItemHasASourceID(t *testing.T) {
	svc := newFakeService()
	srv := startFake(t, svc, "")
	client, _ := newTestClient(t, srv.addr)

	svc.fail("Ingest", unavailable(0))
	anonymous := &personav1.IngestRequest{UserId: "u", Items: []*personav1.IngestItem{
		{Text: "a", SourceId: "s1"}, {Text: "b"},
	}}
	if _, err := client.Ingest(context.Background(), anonymous); status.Code(err) != codes.Unavailable {
		t.Fatalf("err = %v, want UNAVAILABLE without retry", err)
	}
	if got := svc.count("Ingest"); got != 1 {
		t.Fatalf("attempts = %d, want 1 (an item without source id must not be replayed)", got)
	}

	svc.fail("Ingest", unavailable(0))
	named := &personav1.IngestRequest{UserId: "u", Items: []*personav1.IngestItem{
		{Text: "a", SourceId: "s1"}, {Text: "b", SourceId: "s2"},
	}}
	if _, err := client.Ingest(context.Background(), named); err != nil {
		t.Fatalf("Ingest with source ids: %v", err)
	}
	if got := svc.count("Ingest"); got != 3 {
		t.Fatalf("attempts = %d, want 3 (1 before + a failed and a retried one)", got)
	}
}

func TestOtherCodesAreNotRetried(t *testing.T) {
	svc := newFakeService()
	svc.fail("Recall", status.Error(codes.Internal, "boom"))
	srv := startFake(t, svc, "")
	client, _ := newTestClient(t, srv.addr)
	if _, err := client.Recall(context.Background(), &personav1.RecallRequest{UserId: "u"}); status.Code(err) != codes.Internal {
		t.Fatalf("err = %v", err)
	}
	if svc.count("Recall") != 1 {
		t.Fatalf("INTERNAL was retried")
	}
}

func TestErrorExposesRichStatus(t *testing.T) {
	st, err := status.New(codes.InvalidArgument, "max_results must be between 1 and 100, got 0").WithDetails(
		&errdetails.ErrorInfo{Reason: "INVALID_ARGUMENT", Domain: "persona.dev", Metadata: map[string]string{"k": "v"}},
		&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{
			{Field: "max_results", Description: "max_results must be between 1 and 100, got 0"},
		}},
	)
	if err != nil {
		t.Fatal(err)
	}
	svc := newFakeService()
	svc.fail("Recall", st.Err())
	srv := startFake(t, svc, "")
	client, _ := newTestClient(t, srv.addr)

	_, callErr := client.Recall(context.Background(), &personav1.RecallRequest{UserId: "u"})
	var perr *Error
	if !errors.As(callErr, &perr) {
		t.Fatalf("err %T is not *persona.Error", callErr)
	}
	if perr.Code != codes.InvalidArgument || perr.Reason != "INVALID_ARGUMENT" || perr.Domain != "persona.dev" || perr.Metadata["k"] != "v" {
		t.Fatalf("error = %+v", perr)
	}
	if v, ok := perr.Violation("max_results"); !ok || v.Description == "" {
		t.Fatalf("violations = %+v", perr.FieldViolations)
	}
	if len(perr.Details) != 2 || status.Code(callErr) != codes.InvalidArgument {
		t.Fatalf("details = %d, status.Code = %v", len(perr.Details), status.Code(callErr))
	}
	if got := perr.Error(); got != "INVALID_ARGUMENT: max_results must be between 1 and 100, got 0" {
		t.Fatalf("Error() = %q", got)
	}
}

func TestTransportFailureReasonIsTheCodeName(t *testing.T) {
	// Nothing listens on this port: the call fails in the transport, with no ErrorInfo.
	client, _ := newTestClient(t, "127.0.0.1:1", WithRetryPolicy(NoRetry))
	_, err := client.Recall(context.Background(), &personav1.RecallRequest{UserId: "u"})
	var perr *Error
	if !errors.As(err, &perr) || perr.Code != codes.Unavailable || perr.Reason != "UNAVAILABLE" {
		t.Fatalf("err = %#v", err)
	}
}

func TestBackoffIsBoundedAndGrows(t *testing.T) {
	p := DefaultRetryPolicy
	one := func() float64 { return 0.999999 }
	if got := p.Backoff(1, one); got > 200*time.Millisecond || got < 199*time.Millisecond {
		t.Fatalf("first backoff ceiling = %v", got)
	}
	if got := p.Backoff(3, one); got < 799*time.Millisecond || got > 800*time.Millisecond {
		t.Fatalf("third backoff ceiling = %v", got)
	}
	if got := p.Backoff(30, one); got > p.MaxBackoff {
		t.Fatalf("backoff %v exceeds MaxBackoff", got)
	}
}

func TestInvalidOptionsAreRejected(t *testing.T) {
	if _, err := New("127.0.0.1:1", WithRetryPolicy(RetryPolicy{MaxAttempts: 0, Multiplier: 1})); err == nil {
		t.Fatal("MaxAttempts 0 accepted")
	}
	if _, err := New("127.0.0.1:1", WithDefaultTimeout(-time.Second)); err == nil {
		t.Fatal("negative timeout accepted")
	}
}

func TestRetrySafeTable(t *testing.T) {
	cases := map[string]bool{
		personav1.MemoryService_Recall_FullMethodName:             true,
		personav1.MemoryService_DeleteUser_FullMethodName:         true,
		personav1.MemoryService_PutKnowledgeSchema_FullMethodName: true,
		personav1.MemoryService_GetKnowledge_FullMethodName:       true,
		"/persona.v1.MemoryService/SomeFutureWrite":               false,
		personav1.MemoryService_Ingest_FullMethodName:             false, // with no items
	}
	for method, want := range cases {
		if got := RetrySafe(method, &personav1.IngestRequest{}); got != want {
			t.Errorf("RetrySafe(%s) = %v, want %v", method, got, want)
		}
	}
}
