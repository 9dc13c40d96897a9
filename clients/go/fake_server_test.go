package persona

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	personav1 "github.com/persona-dev/persona/clients/go/gen/persona/v1"
)

// fakeService is a scripted MemoryService: each RPC pops its next scripted failure (nil for
// success) and records what the client sent.
type fakeService struct {
	personav1.UnimplementedMemoryServiceServer

	mu        sync.Mutex
	failures  map[string][]error
	calls     map[string]int
	keys      []string
	deadlines []time.Duration
	streamReq []*personav1.StreamContextRequest
	// streams scripts StreamContext: one function per connection, in order.
	streams []func(personav1.MemoryService_StreamContextServer) error
	// canceled is closed when a stream's context ends because the client went away.
	canceled chan struct{}
}

func newFakeService() *fakeService {
	return &fakeService{failures: map[string][]error{}, calls: map[string]int{}, canceled: make(chan struct{}, 8)}
}

func (f *fakeService) fail(method string, errs ...error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failures[method] = append(f.failures[method], errs...)
}

func (f *fakeService) record(ctx context.Context, method string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[method]++
	md, _ := metadata.FromIncomingContext(ctx)
	f.keys = append(f.keys, firstOr(md.Get(APIKeyHeader), ""))
	if d, ok := ctx.Deadline(); ok {
		f.deadlines = append(f.deadlines, time.Until(d))
	} else {
		f.deadlines = append(f.deadlines, 0)
	}
	if queue := f.failures[method]; len(queue) > 0 {
		f.failures[method] = queue[1:]
		return queue[0]
	}
	return nil
}

func (f *fakeService) count(method string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[method]
}

func firstOr(values []string, fallback string) string {
	if len(values) == 0 {
		return fallback
	}
	return values[0]
}

func (f *fakeService) Recall(ctx context.Context, req *personav1.RecallRequest) (*personav1.RecallResponse, error) {
	if err := f.record(ctx, "Recall"); err != nil {
		return nil, err
	}
	return &personav1.RecallResponse{ContextBlock: "recalled " + req.GetQuery()}, nil
}

func (f *fakeService) Ingest(ctx context.Context, req *personav1.IngestRequest) (*personav1.IngestResponse, error) {
	if err := f.record(ctx, "Ingest"); err != nil {
		return nil, err
	}
	return &personav1.IngestResponse{}, nil
}

func (f *fakeService) StreamContext(req *personav1.StreamContextRequest, stream personav1.MemoryService_StreamContextServer) error {
	f.mu.Lock()
	f.streamReq = append(f.streamReq, req)
	n := len(f.streamReq)
	md, _ := metadata.FromIncomingContext(stream.Context())
	f.keys = append(f.keys, firstOr(md.Get(APIKeyHeader), ""))
	var script func(personav1.MemoryService_StreamContextServer) error
	if n <= len(f.streams) {
		script = f.streams[n-1]
	}
	f.mu.Unlock()
	if script == nil {
		return status.Error(codes.Internal, "no script for this connection")
	}
	err := script(stream)
	if stream.Context().Err() != nil {
		f.canceled <- struct{}{}
	}
	return err
}

func (f *fakeService) streamRequests() []*personav1.StreamContextRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*personav1.StreamContextRequest(nil), f.streamReq...)
}

// fakeServer serves a fakeService on a loopback port.
type fakeServer struct {
	addr   string
	server *grpc.Server
}

func startFake(t *testing.T, svc *fakeService, addr string) *fakeServer {
	t.Helper()
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	server := grpc.NewServer()
	personav1.RegisterMemoryServiceServer(server, svc)
	go func() { _ = server.Serve(lis) }()
	fs := &fakeServer{addr: lis.Addr().String(), server: server}
	t.Cleanup(server.Stop)
	return fs
}

// newTestClient connects to the fake; waits are recorded instead of slept.
func newTestClient(t *testing.T, addr string, opts ...Option) (*Client, *[]time.Duration) {
	t.Helper()
	client, err := New(addr, append([]Option{WithAPIKey("k1")}, opts...)...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = client.Close() })
	var mu sync.Mutex
	waits := &[]time.Duration{}
	client.policy.sleep = func(ctx context.Context, d time.Duration) error {
		mu.Lock()
		*waits = append(*waits, d)
		mu.Unlock()
		return ctx.Err()
	}
	return client, waits
}

func unavailable(retryDelay time.Duration) error {
	st := status.New(codes.Unavailable, "the memory store is unavailable")
	details := []*errdetails.ErrorInfo{{Reason: "STORE_UNAVAILABLE", Domain: "persona.dev"}}
	if retryDelay > 0 {
		withRetry, err := st.WithDetails(details[0], &errdetails.RetryInfo{RetryDelay: durationpb.New(retryDelay)})
		if err != nil {
			panic(err)
		}
		return withRetry.Err()
	}
	withInfo, err := st.WithDetails(details[0])
	if err != nil {
		panic(err)
	}
	return withInfo.Err()
}
