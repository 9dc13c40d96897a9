package persona

import (
	"context"
	"crypto/tls"
	"errors"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	personav1 "github.com/persona-dev/persona/clients/go/gen/persona/v1"
)

// Version is this SDK's version, sent in the user agent.
const Version = "0.1.0"

// APIKeyHeader is the call metadata that carries the API key.
const APIKeyHeader = "x-api-key"

// DefaultTimeout bounds a unary call (all its retries included) whose context has no deadline.
const DefaultTimeout = 10 * time.Second

// Client is a Persona client. Its embedded MemoryServiceClient has one method per RPC; every
// call goes through the client's policy (API key, default deadline, retries, [Error]).
// A Client is safe for concurrent use.
type Client struct {
	personav1.MemoryServiceClient

	conn   *grpc.ClientConn // nil when the caller owns the connection
	policy *policyConn
}

type config struct {
	apiKey      string
	creds       credentials.TransportCredentials
	timeout     time.Duration
	retry       RetryPolicy
	dialOptions []grpc.DialOption
}

// Option configures a [Client].
type Option func(*config)

// WithAPIKey sends key as `x-api-key` metadata on every call.
func WithAPIKey(key string) Option { return func(c *config) { c.apiKey = key } }

// WithInsecure dials in plaintext (local development). It is the default, as in the Python SDK
// and the `persona` command.
func WithInsecure() Option {
	return func(c *config) { c.creds = insecure.NewCredentials() }
}

// WithTLS dials with TLS; a nil config uses the system's root certificates.
func WithTLS(cfg *tls.Config) Option {
	return func(c *config) {
		if cfg == nil {
			cfg = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		c.creds = credentials.NewTLS(cfg)
	}
}

// WithTransportCredentials dials with ready-made credentials (a custom CA, mutual TLS, ALTS).
func WithTransportCredentials(creds credentials.TransportCredentials) Option {
	return func(c *config) { c.creds = creds }
}

// WithDefaultTimeout sets the deadline given to unary calls whose context has none
// ([DefaultTimeout] unless set; 0 means no deadline). StreamContext never gets one: a
// subscription lives as long as its context.
func WithDefaultTimeout(d time.Duration) Option { return func(c *config) { c.timeout = d } }

// WithRetryPolicy replaces [DefaultRetryPolicy]; [NoRetry] disables retries.
func WithRetryPolicy(p RetryPolicy) Option { return func(c *config) { c.retry = p } }

// WithDialOptions adds options to grpc.NewClient (keepalive, interceptors, message sizes).
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(c *config) { c.dialOptions = append(c.dialOptions, opts...) }
}

func newConfig(opts []Option) (*config, error) {
	cfg := &config{creds: insecure.NewCredentials(), timeout: DefaultTimeout, retry: DefaultRetryPolicy}
	for _, opt := range opts {
		opt(cfg)
	}
	if cfg.timeout < 0 {
		return nil, errors.New("persona: the default timeout must not be negative")
	}
	if err := cfg.retry.validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// New connects to target ("host:port", or any grpc.NewClient target). The connection is made
// lazily, on the first call; Close releases it.
func New(target string, opts ...Option) (*Client, error) {
	cfg, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	dial := append([]grpc.DialOption{
		grpc.WithTransportCredentials(cfg.creds),
		grpc.WithUserAgent("persona-go/" + Version),
	}, cfg.dialOptions...)
	conn, err := grpc.NewClient(target, dial...)
	if err != nil {
		return nil, err
	}
	c := newClient(conn, cfg)
	c.conn = conn
	return c, nil
}

// NewWithConn uses a connection the caller made and keeps owning: Close leaves it open.
// Transport options (TLS, dial options) do not apply; the call policy does.
func NewWithConn(conn grpc.ClientConnInterface, opts ...Option) (*Client, error) {
	cfg, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	return newClient(conn, cfg), nil
}

func newClient(conn grpc.ClientConnInterface, cfg *config) *Client {
	policy := &policyConn{next: conn, apiKey: cfg.apiKey, timeout: cfg.timeout, retry: cfg.retry}
	return &Client{MemoryServiceClient: personav1.NewMemoryServiceClient(policy), policy: policy}
}

// Close closes the connection New made.
func (c *Client) Close() error {
	if c.conn == nil {
		return nil
	}
	return c.conn.Close()
}

// policyConn is where the client's policy lives: the generated stubs call Invoke and NewStream,
// so every RPC, including ones added to the protos later, gets the key, the deadline and the
// error type; retries apply to the methods RetrySafe knows.
type policyConn struct {
	next    grpc.ClientConnInterface
	apiKey  string
	timeout time.Duration
	retry   RetryPolicy
	sleep   func(context.Context, time.Duration) error // replaced in tests
}

func (p *policyConn) withKey(ctx context.Context) context.Context {
	if p.apiKey == "" {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, APIKeyHeader, p.apiKey)
}

func (p *policyConn) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	if _, ok := ctx.Deadline(); !ok && p.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, p.timeout)
		defer cancel()
	}
	deadline, hasDeadline := ctx.Deadline()
	tries := newAttempts(p.retry, deadline, hasDeadline, RetrySafe(method, args))
	ctx = p.withKey(ctx)
	for {
		err := p.next.Invoke(ctx, method, args, reply, opts...)
		if err == nil {
			return nil
		}
		perr, ok := FromError(err).(*Error)
		if !ok {
			return err
		}
		delay, again := tries.failed(perr, time.Now(), false)
		if !again || ctx.Err() != nil {
			return perr
		}
		if err := p.wait(ctx, delay); err != nil {
			return perr
		}
	}
}

func (p *policyConn) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	stream, err := p.next.NewStream(p.withKey(ctx), desc, method, opts...)
	if err != nil {
		return nil, FromError(err)
	}
	return errorStream{stream}, nil
}

func (p *policyConn) wait(ctx context.Context, d time.Duration) error {
	if p.sleep != nil {
		return p.sleep(ctx, d)
	}
	return sleepCtx(ctx, d)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// errorStream makes a stream's failures *Error too (io.EOF stays io.EOF).
type errorStream struct{ grpc.ClientStream }

func (s errorStream) RecvMsg(m any) error { return FromError(s.ClientStream.RecvMsg(m)) }

func (s errorStream) SendMsg(m any) error { return FromError(s.ClientStream.SendMsg(m)) }
