package ingest

import (
	"context"
	"net"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	"go.temporal.io/api/serviceerror"
)

// Permanent marks err as a failure that no retry of the same call can fix
// (the data is refused, not the service unavailable). A Products or Sink
// implementation may wrap its errors with it; the Consumer then looks for
// the messages that cause it and dead-letters them instead of retrying.
// Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err}
}

type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// verdict is what the consumer does after a failed store or sink call.
type verdict int

const (
	// transient: the service failed, not the data. Retry the same call,
	// for as long as it takes; never split it or dead-letter anything.
	transient verdict = iota
	// permanent: some of the data is refused. Split the call to find it.
	permanent
	// permanentAll: the call's target (a tenant's schema) refuses all of
	// it, whatever the data; every item of the call is refused.
	permanentAll
)

func (v verdict) String() string {
	switch v {
	case permanent:
		return "permanent"
	case permanentAll:
		return "permanent for the whole call"
	}
	return "transient"
}

// classify says whether err, from Products.ApplyChanges or Sink.Deliver,
// is transient or permanent. Anything it does not know is transient, and a
// transient cause anywhere in the error's tree (errors.Join, %w) wins over
// a permanent one: a wrong "permanent" dead-letters good changes during an
// outage, a wrong "transient" only holds one consumer's batch until an
// operator looks at the log.
func classify(err error) verdict {
	if err == nil {
		return transient
	}
	v, sawTransient := transient, false
	walk(err, func(e error) {
		switch w := leaf(e); {
		case w == transient:
			sawTransient = true
		case w > v:
			v = w
		}
	})
	if sawTransient {
		return transient
	}
	return v
}

// unknown is leaf's answer for an error that says nothing either way.
const unknown verdict = -1

// leaf classifies one error of a tree by its own type, not its causes.
func leaf(err error) verdict {
	switch e := err.(type) {
	case *permanentError:
		return permanent
	case *pgconn.PgError:
		return pgVerdict(e.Code)
	case *pgconn.ConnectError:
		return transient
	case *serviceerror.InvalidArgument:
		// A refused request: a payload over the blob size limit, an
		// input the server will never take.
		return permanent
	case *serviceerror.ResourceExhausted:
		// A rate or concurrency limit, except gRPC's own "message larger
		// than max": a batch too big, which a split fixes.
		if strings.Contains(e.Message, "larger than max") {
			return permanent
		}
		return transient
	case *serviceerror.Unavailable, *serviceerror.DeadlineExceeded, *serviceerror.Canceled, *serviceerror.Internal,
		*serviceerror.Aborted, *serviceerror.NamespaceNotFound, *serviceerror.NamespaceUnavailable,
		*serviceerror.NamespaceNotActive, *serviceerror.NamespaceInvalidState, *serviceerror.PermissionDenied,
		*serviceerror.FailedPrecondition, *serviceerror.Unimplemented:
		// The deployment's state (an outage, a namespace not yet
		// registered, a credential), not the data: it affects every call.
		return transient
	}
	if err == context.DeadlineExceeded || err == context.Canceled {
		return transient
	}
	if _, ok := err.(net.Error); ok {
		return transient
	}
	return unknown
}

// pgVerdict classifies a SQLSTATE (PostgreSQL, Appendix A). Classes the
// data can cause are permanent; those of a schema that is missing or not
// as the statement expects refuse every row; the rest (connections,
// shutdowns, serialization and deadlocks, resources, locks, I/O, internal
// errors, 0A000 "cached plan must not change result type" after a
// migration, and whatever is unknown) are transient.
func pgVerdict(code string) verdict {
	if len(code) != 5 {
		return transient
	}
	switch class := code[:2]; class {
	case "22", // data exception: 22021 bad encoding (a NUL), 22P05 untranslatable character, 22003 out of range
		"23", // integrity constraint violation
		"21", // cardinality violation
		"54": // program limit exceeded: a value too large to index
		return permanent
	case "42", // syntax error or access rule violation: no such table or column, no privilege
		"3F": // invalid schema name
		// The statement is fixed and its values are parameters, so
		// these come from the tenant's schema, never from one row.
		return permanentAll
	}
	return transient
}

// walk calls visit for err and every error it wraps.
func walk(err error, visit func(error)) {
	for err != nil {
		visit(err)
		switch u := err.(type) {
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				walk(e, visit)
			}
			return
		case interface{ Unwrap() error }:
			err = u.Unwrap()
		default:
			return
		}
	}
}
