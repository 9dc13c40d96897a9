package persona

import (
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"google.golang.org/grpc/codes"

	personav1 "github.com/persona-dev/persona/clients/go/gen/persona/v1"
)

// RetryPolicy is exponential backoff with full jitter (gRPC's own retry design, A6), the same
// policy and defaults as the Python SDK.
//
// Only UNAVAILABLE is retried, and only for calls that are safe to repeat (see [RetrySafe]).
// The n-th retry waits a random time in [0, min(InitialBackoff*Multiplier^(n-1), MaxBackoff)],
// never less than the server's RetryInfo.retry_delay, and never past the call's deadline: a
// retry that could not finish in time is not attempted. MaxAttempts counts the first attempt;
// 1 disables retries.
type RetryPolicy struct {
	MaxAttempts    int
	InitialBackoff time.Duration
	MaxBackoff     time.Duration
	Multiplier     float64
}

// DefaultRetryPolicy is the policy of a client built without [WithRetryPolicy].
var DefaultRetryPolicy = RetryPolicy{
	MaxAttempts:    3,
	InitialBackoff: 200 * time.Millisecond,
	MaxBackoff:     5 * time.Second,
	Multiplier:     2,
}

// NoRetry makes every call a single attempt.
var NoRetry = RetryPolicy{MaxAttempts: 1, Multiplier: 1}

func (p RetryPolicy) validate() error {
	switch {
	case p.MaxAttempts < 1:
		return fmt.Errorf("persona: RetryPolicy.MaxAttempts must be at least 1, got %d", p.MaxAttempts)
	case p.InitialBackoff < 0 || p.MaxBackoff < 0:
		return fmt.Errorf("persona: RetryPolicy backoffs must not be negative")
	case p.Multiplier < 1:
		return fmt.Errorf("persona: RetryPolicy.Multiplier must be at least 1, got %v", p.Multiplier)
	}
	return nil
}

// Backoff is the jittered wait before retry number n (1 for the first retry); rnd returns a
// number in [0, 1).
func (p RetryPolicy) Backoff(n int, rnd func() float64) time.Duration {
	ceiling := float64(p.InitialBackoff) * math.Pow(p.Multiplier, float64(n-1))
	ceiling = math.Min(ceiling, float64(p.MaxBackoff))
	return time.Duration(ceiling * rnd())
}

// attempts is the retry state of one logical call (or of one subscription, whose budget is
// reset by every event received).
type attempts struct {
	policy    RetryPolicy
	deadline  time.Time // zero: none
	retrySafe bool
	rnd       func() float64
	failures  int
}

func newAttempts(policy RetryPolicy, deadline time.Time, hasDeadline, retrySafe bool) *attempts {
	a := &attempts{policy: policy, retrySafe: retrySafe, rnd: rand.Float64}
	if hasDeadline {
		a.deadline = deadline
	}
	return a
}

func (a *attempts) succeeded() { a.failures = 0 }

// failed returns how long to wait before the next attempt, or false when the call must not
// (or can no longer) be retried. dropped says the failure was a lost connection, retried like
// UNAVAILABLE whatever its code.
func (a *attempts) failed(err *Error, now time.Time, dropped bool) (time.Duration, bool) {
	a.failures++
	unavailable := dropped || err.Code == codes.Unavailable
	if !a.retrySafe || !unavailable || a.failures >= a.policy.MaxAttempts {
		return 0, false
	}
	delay := a.policy.Backoff(a.failures, a.rnd)
	if err.HasRetryDelay && err.RetryDelay > delay {
		delay = err.RetryDelay
	}
	if !a.deadline.IsZero() && delay >= a.deadline.Sub(now) {
		return 0, false // the retry could not finish before the deadline: fail now, honestly
	}
	return delay, true
}

// retrySafeMethods are the RPCs that may be repeated after UNAVAILABLE: those without side
// effects and the idempotent deletes (deleting twice leaves the same state; the replay may
// answer NOT_FOUND). A method missing here, such as one added to the protos later, is never
// retried until someone decides it is safe.
var retrySafeMethods = map[string]bool{
	personav1.MemoryService_Recall_FullMethodName:        true,
	personav1.MemoryService_AskStructured_FullMethodName: true,
	personav1.MemoryService_StreamContext_FullMethodName: true,
	personav1.MemoryService_GetMemory_FullMethodName:     true,
	personav1.MemoryService_ListMemories_FullMethodName:  true,
	personav1.MemoryService_DeleteMemory_FullMethodName:  true,
	personav1.MemoryService_DeleteUser_FullMethodName:    true,
	personav1.MemoryService_GetProfile_FullMethodName:    true,
	// A schema put twice is the same schema (an upsert).
	personav1.MemoryService_PutKnowledgeSchema_FullMethodName:    true,
	personav1.MemoryService_ListKnowledgeSchemas_FullMethodName:  true,
	personav1.MemoryService_DeleteKnowledgeSchema_FullMethodName: true,
	personav1.MemoryService_GetKnowledge_FullMethodName:          true,
}

// RetrySafe reports whether a call of method (a full gRPC method name) with this request may be
// retried after UNAVAILABLE. Ingest is safe only when every item has a source id: the server
// then recognises a replay (UNCHANGED) instead of storing a second episode.
func RetrySafe(method string, req any) bool {
	if method == personav1.MemoryService_Ingest_FullMethodName {
		in, ok := req.(*personav1.IngestRequest)
		if !ok || len(in.GetItems()) == 0 {
			return false
		}
		for _, item := range in.GetItems() {
			if item.GetSourceId() == "" {
				return false
			}
		}
		return true
	}
	return retrySafeMethods[method]
}
