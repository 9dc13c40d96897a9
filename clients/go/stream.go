package persona

import (
	"context"
	"errors"
	"io"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	personav1 "github.com/persona-dev/persona/clients/go/gen/persona/v1"
)

// ContextStream reads one StreamContext subscription and survives dropped connections: after
// UNAVAILABLE (or a CANCELLED the caller did not cause: a server cancelling calls on its way
// down) it waits (the client's retry policy and backoff, honouring RetryInfo) and
// reconnects with the resume token of the last event it returned, so the server sends what
// changed since instead of a new snapshot, and nothing is missed or repeated. Every event
// received resets the retry budget, so a long-lived stream survives many separate outages but
// not one that lasts.
//
// Events are returned as the server sent them, whatever their kind: an event kind this SDK
// does not know yet (a newer server) reaches the caller like any other.
type ContextStream struct {
	client  *Client
	ctx     context.Context
	cancel  context.CancelFunc
	request *personav1.StreamContextRequest
	opts    []grpc.CallOption

	stream grpc.ServerStreamingClient[personav1.StreamContextResponse]
	tries  *attempts
	done   bool

	tokenMu     sync.Mutex // ResumeToken may be read from another goroutine
	resumeToken string
}

// Subscribe opens a StreamContext subscription; the call starts with the first Recv. It ends
// when ctx is cancelled, Close is called, the server ends it, or a failure cannot be retried.
// A deadline on ctx bounds the whole subscription, reconnections included.
func (c *Client) Subscribe(ctx context.Context, req *personav1.StreamContextRequest, opts ...grpc.CallOption) *ContextStream {
	ctx, cancel := context.WithCancel(ctx)
	deadline, hasDeadline := ctx.Deadline()
	return &ContextStream{
		client:      c,
		ctx:         ctx,
		cancel:      cancel,
		request:     proto.Clone(req).(*personav1.StreamContextRequest),
		opts:        opts,
		resumeToken: req.GetResumeToken(),
		tries:       newAttempts(c.policy.retry, deadline, hasDeadline, true),
	}
}

// Recv returns the next event. io.EOF means the subscription ended normally; any other error
// is final (an *Error, or the context's error). Like a gRPC stream's, Recv must not be called
// from two goroutines at once; ResumeToken and Close may be called from any goroutine.
func (s *ContextStream) Recv() (*personav1.StreamContextResponse, error) {
	for {
		if s.done {
			return nil, io.EOF
		}
		if err := s.ctx.Err(); err != nil {
			s.finish()
			return nil, err
		}
		if s.stream == nil {
			req := proto.Clone(s.request).(*personav1.StreamContextRequest)
			req.ResumeToken = s.ResumeToken()
			stream, err := s.client.StreamContext(s.ctx, req, s.opts...)
			if err != nil {
				if retryErr := s.retry(err); retryErr != nil {
					return nil, retryErr
				}
				continue
			}
			s.stream = stream
		}
		event, err := s.stream.Recv()
		if err == nil {
			if token := event.GetResumeToken(); token != "" {
				s.tokenMu.Lock()
				s.resumeToken = token
				s.tokenMu.Unlock()
			}
			s.tries.succeeded()
			return event, nil
		}
		s.stream = nil
		if errors.Is(err, io.EOF) {
			s.finish()
			return nil, io.EOF
		}
		if retryErr := s.retry(err); retryErr != nil {
			return nil, retryErr
		}
	}
}

// retry waits before the next connection attempt, or returns the error that ends the stream.
func (s *ContextStream) retry(err error) error {
	if ctxErr := s.ctx.Err(); ctxErr != nil {
		s.finish()
		return ctxErr
	}
	perr, ok := FromError(err).(*Error)
	if !ok {
		s.finish()
		return err
	}
	// A server that cancels the call on its way down (RST_STREAM CANCEL) is an outage too:
	// the caller did not cancel, or ctx.Err() above would say so.
	dropped := perr.Code == codes.Canceled
	delay, again := s.tries.failed(perr, time.Now(), dropped)
	if !again {
		s.finish()
		return perr
	}
	if waitErr := s.client.policy.wait(s.ctx, delay); waitErr != nil {
		s.finish()
		return waitErr
	}
	return nil
}

func (s *ContextStream) finish() {
	s.done = true
	s.stream = nil
	s.cancel()
}

// ResumeToken is the token of the last event returned (or the request's own): pass it in a
// later StreamContextRequest to resume after that event.
func (s *ContextStream) ResumeToken() string {
	s.tokenMu.Lock()
	defer s.tokenMu.Unlock()
	return s.resumeToken
}

// Close ends the subscription; the server sees the call cancelled. A Recv blocked in another
// goroutine returns.
func (s *ContextStream) Close() {
	s.cancel()
}
