package persona

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"

	personav1 "github.com/persona-dev/persona/clients/go/gen/persona/v1"
)

func heartbeat(token string) *personav1.StreamContextResponse {
	return &personav1.StreamContextResponse{
		ResumeToken: token,
		Event:       &personav1.StreamContextResponse_Heartbeat{Heartbeat: &personav1.Heartbeat{}},
	}
}

func send(events ...*personav1.StreamContextResponse) func(personav1.MemoryService_StreamContextServer) error {
	return func(stream personav1.MemoryService_StreamContextServer) error {
		for _, e := range events {
			if err := stream.Send(e); err != nil {
				return err
			}
		}
		return nil
	}
}

func then(first, second func(personav1.MemoryService_StreamContextServer) error) func(personav1.MemoryService_StreamContextServer) error {
	return func(stream personav1.MemoryService_StreamContextServer) error {
		if err := first(stream); err != nil {
			return err
		}
		return second(stream)
	}
}

func failWith(err error) func(personav1.MemoryService_StreamContextServer) error {
	return func(personav1.MemoryService_StreamContextServer) error { return err }
}

func readAll(t *testing.T, s *ContextStream) ([]string, error) {
	t.Helper()
	var tokens []string
	for {
		event, err := s.Recv()
		if err != nil {
			return tokens, err
		}
		tokens = append(tokens, event.GetResumeToken())
	}
}

func TestStreamResumesWithTheLastTokenAfterUnavailable(t *testing.T) {
	svc := newFakeService()
	svc.streams = append(svc.streams,
		then(send(heartbeat("t1"), heartbeat("t2")), failWith(unavailable(0))),
		then(send(heartbeat("t3")), failWith(unavailable(0))),
		send(heartbeat("t4")),
	)
	srv := startFake(t, svc, "")
	client, waits := newTestClient(t, srv.addr)

	stream := client.Subscribe(context.Background(), &personav1.StreamContextRequest{UserId: "u", Query: "q"})
	tokens, err := readAll(t, stream)
	if !errors.Is(err, io.EOF) {
		t.Fatalf("end of stream = %v, want io.EOF", err)
	}
	if got := len(tokens); got != 4 || tokens[3] != "t4" {
		t.Fatalf("events = %v, want t1..t4 once each", tokens)
	}
	reqs := svc.streamRequests()
	if len(reqs) != 3 || reqs[0].GetResumeToken() != "" || reqs[1].GetResumeToken() != "t2" || reqs[2].GetResumeToken() != "t3" {
		t.Fatalf("resume tokens sent = %v", reqs)
	}
	if reqs[2].GetQuery() != "q" || reqs[2].GetUserId() != "u" {
		t.Fatalf("the resumed request lost its fields: %v", reqs[2])
	}
	// Each outage follows an event, so each one starts a fresh budget: one wait per outage.
	if len(*waits) != 2 {
		t.Fatalf("waits = %v", *waits)
	}
	if stream.ResumeToken() != "t4" {
		t.Fatalf("ResumeToken() = %q", stream.ResumeToken())
	}
	for _, key := range svc.keys {
		if key != "k1" {
			t.Fatalf("a stream connection lacked the API key: %v", svc.keys)
		}
	}
}

func TestStreamGivesUpAfterAnOutageThatLasts(t *testing.T) {
	svc := newFakeService()
	for range DefaultRetryPolicy.MaxAttempts + 1 {
		svc.streams = append(svc.streams, failWith(unavailable(0)))
	}
	srv := startFake(t, svc, "")
	client, _ := newTestClient(t, srv.addr)

	_, err := client.Subscribe(context.Background(), &personav1.StreamContextRequest{UserId: "u"}).Recv()
	var perr *Error
	if !errors.As(err, &perr) || perr.Code != codes.Unavailable {
		t.Fatalf("err = %v, want UNAVAILABLE", err)
	}
	if got := len(svc.streamRequests()); got != DefaultRetryPolicy.MaxAttempts {
		t.Fatalf("connections = %d, want %d", got, DefaultRetryPolicy.MaxAttempts)
	}
}

func TestStreamErrorOtherThanUnavailableIsFinal(t *testing.T) {
	svc := newFakeService()
	svc.streams = append(svc.streams, failWith(status.Error(codes.PermissionDenied, "no")))
	srv := startFake(t, svc, "")
	client, _ := newTestClient(t, srv.addr)

	stream := client.Subscribe(context.Background(), &personav1.StreamContextRequest{UserId: "u"})
	if _, err := stream.Recv(); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("err = %v", err)
	}
	if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("after a final error Recv = %v, want io.EOF", err)
	}
	if len(svc.streamRequests()) != 1 {
		t.Fatal("PERMISSION_DENIED was retried")
	}
}

func TestUnknownEventKindsArePassedThrough(t *testing.T) {
	// A newer server may send an event case this SDK was not generated with (field 9 here).
	future := heartbeat("t1")
	future.Event = nil
	raw := protowire.AppendTag(nil, 9, protowire.BytesType)
	raw = protowire.AppendBytes(raw, []byte{0x08, 0x01})
	future.ProtoReflect().SetUnknown(raw)

	svc := newFakeService()
	svc.streams = append(svc.streams, send(future, heartbeat("t2")))
	srv := startFake(t, svc, "")
	client, _ := newTestClient(t, srv.addr)

	stream := client.Subscribe(context.Background(), &personav1.StreamContextRequest{UserId: "u"})
	event, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if event.GetEvent() != nil || len(event.ProtoReflect().GetUnknown()) == 0 || event.GetResumeToken() != "t1" {
		t.Fatalf("unknown event = %v", event)
	}
	if next, err := stream.Recv(); err != nil || next.GetHeartbeat() == nil {
		t.Fatalf("next = %v, %v", next, err)
	}
}

func TestStreamSurvivesAServerRestart(t *testing.T) {
	// A real dropped connection: the server goes away mid-stream and comes back on the same port.
	svc := newFakeService()
	release := make(chan struct{})
	svc.streams = append(svc.streams,
		then(send(heartbeat("t1")), func(stream personav1.MemoryService_StreamContextServer) error {
			<-stream.Context().Done() // held open until the server is stopped
			close(release)
			return stream.Context().Err()
		}),
		send(heartbeat("t2")),
	)
	first := startFake(t, svc, "")
	client, err := New(first.addr, WithAPIKey("k1"), WithRetryPolicy(RetryPolicy{
		MaxAttempts: 10, InitialBackoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, Multiplier: 2,
	}))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()

	stream := client.Subscribe(context.Background(), &personav1.StreamContextRequest{UserId: "u"})
	if event, err := stream.Recv(); err != nil || event.GetResumeToken() != "t1" {
		t.Fatalf("first event = %v, %v", event, err)
	}
	first.server.Stop()
	<-release
	startFake(t, svc, first.addr)

	event, err := stream.Recv()
	if err != nil || event.GetResumeToken() != "t2" {
		t.Fatalf("after the restart: %v, %v", event, err)
	}
	if reqs := svc.streamRequests(); reqs[len(reqs)-1].GetResumeToken() != "t1" {
		t.Fatalf("reconnected without the last token: %v", reqs)
	}
}

func TestCloseCancelsTheCall(t *testing.T) {
	svc := newFakeService()
	svc.streams = append(svc.streams, then(send(heartbeat("t1")), func(stream personav1.MemoryService_StreamContextServer) error {
		<-stream.Context().Done()
		return stream.Context().Err()
	}))
	srv := startFake(t, svc, "")
	client, _ := newTestClient(t, srv.addr)

	stream := client.Subscribe(context.Background(), &personav1.StreamContextRequest{UserId: "u"})
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := stream.Recv(); done <- err }()
	stream.Close()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) && status.Code(err) != codes.Canceled {
			t.Fatalf("Recv after Close = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Recv did not return after Close")
	}
	select {
	case <-svc.canceled:
	case <-time.After(5 * time.Second):
		t.Fatal("the server never saw the call cancelled")
	}
}

func TestServerSideCancelIsResumedLikeAnOutage(t *testing.T) {
	svc := newFakeService()
	svc.streams = append(svc.streams,
		then(send(heartbeat("t1")), failWith(status.Error(codes.Canceled, "server shutting down"))),
		send(heartbeat("t2")),
	)
	srv := startFake(t, svc, "")
	client, _ := newTestClient(t, srv.addr)

	tokens, err := readAll(t, client.Subscribe(context.Background(), &personav1.StreamContextRequest{UserId: "u"}))
	if !errors.Is(err, io.EOF) || len(tokens) != 2 {
		t.Fatalf("tokens = %v, err = %v", tokens, err)
	}
	if reqs := svc.streamRequests(); reqs[1].GetResumeToken() != "t1" {
		t.Fatalf("resumed with %q", reqs[1].GetResumeToken())
	}
}
