package persona

import (
	"errors"
	"fmt"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"
)

// FieldViolation is one invalid field of a request; Field is a proto path such as
// "items[3].occurred_at".
type FieldViolation struct {
	Field       string
	Description string
}

// Error is a failed Persona call, read from the google.rpc.Status the server sends: the code,
// ErrorInfo (Reason, Domain, Metadata: always present for the server's own errors), BadRequest
// field violations (for INVALID_ARGUMENT) and RetryInfo (when a retry may succeed).
//
// Without an ErrorInfo (a transport failure, such as no server listening) Reason is the code's
// name ("UNAVAILABLE"), as in the Python SDK. Every error a [Client] returns for a failed RPC
// is an *Error; status.FromError and status.Code keep working on it.
type Error struct {
	Code            codes.Code
	Message         string
	Reason          string
	Domain          string
	Metadata        map[string]string
	FieldViolations []FieldViolation
	// RetryDelay is the server's RetryInfo.retry_delay; HasRetryDelay says whether it sent one.
	RetryDelay    time.Duration
	HasRetryDelay bool
	// Details holds every status detail as sent, including kinds this SDK does not read.
	Details []*anypb.Any

	status *status.Status
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s: %s", CodeName(e.Code), e.Message)
}

// GRPCStatus lets status.FromError, status.Code and grpc's own helpers read the status.
func (e *Error) GRPCStatus() *status.Status { return e.status }

// Violation returns the violation of one field, if the server reported one.
func (e *Error) Violation(field string) (FieldViolation, bool) {
	for _, v := range e.FieldViolations {
		if v.Field == field {
			return v, true
		}
	}
	return FieldViolation{}, false
}

// CodeName is the canonical upper-case name of a code ("INVALID_ARGUMENT"), the same string
// every Persona SDK and the server's ErrorInfo use; codes.Code.String() spells it "InvalidArgument".
func CodeName(c codes.Code) string {
	if name, ok := codeNames[c]; ok {
		return name
	}
	return fmt.Sprintf("CODE_%d", uint32(c))
}

var codeNames = map[codes.Code]string{
	codes.OK:                 "OK",
	codes.Canceled:           "CANCELLED",
	codes.Unknown:            "UNKNOWN",
	codes.InvalidArgument:    "INVALID_ARGUMENT",
	codes.DeadlineExceeded:   "DEADLINE_EXCEEDED",
	codes.NotFound:           "NOT_FOUND",
	codes.AlreadyExists:      "ALREADY_EXISTS",
	codes.PermissionDenied:   "PERMISSION_DENIED",
	codes.ResourceExhausted:  "RESOURCE_EXHAUSTED",
	codes.FailedPrecondition: "FAILED_PRECONDITION",
	codes.Aborted:            "ABORTED",
	codes.OutOfRange:         "OUT_OF_RANGE",
	codes.Unimplemented:      "UNIMPLEMENTED",
	codes.Internal:           "INTERNAL",
	codes.Unavailable:        "UNAVAILABLE",
	codes.DataLoss:           "DATA_LOSS",
	codes.Unauthenticated:    "UNAUTHENTICATED",
}

// FromError turns an error of a gRPC call into an *Error (nil stays nil; an *Error is returned
// as is). An error that carries no gRPC status, such as a context error, is returned unchanged.
func FromError(err error) error {
	if err == nil {
		return nil
	}
	var perr *Error
	if errors.As(err, &perr) {
		return err
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	return fromStatus(st)
}

func fromStatus(st *status.Status) *Error {
	e := &Error{Code: st.Code(), Message: st.Message(), status: st}
	proto := st.Proto()
	e.Details = proto.GetDetails()
	for _, detail := range e.Details {
		msg, err := detail.UnmarshalNew()
		if err != nil {
			continue // a detail type this binary does not know: kept raw in Details
		}
		switch d := msg.(type) {
		case *errdetails.ErrorInfo:
			e.Reason, e.Domain, e.Metadata = d.GetReason(), d.GetDomain(), d.GetMetadata()
		case *errdetails.BadRequest:
			for _, v := range d.GetFieldViolations() {
				e.FieldViolations = append(e.FieldViolations, FieldViolation{v.GetField(), v.GetDescription()})
			}
		case *errdetails.RetryInfo:
			e.RetryDelay, e.HasRetryDelay = d.GetRetryDelay().AsDuration(), true
		}
	}
	if e.Reason == "" {
		e.Reason = CodeName(e.Code)
	}
	if e.Metadata == nil {
		e.Metadata = map[string]string{}
	}
	return e
}
