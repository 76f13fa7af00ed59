package api

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"syscall"

	"github.com/gin-gonic/gin"
	"go.temporal.io/api/serviceerror"

	"github.com/sagaflow/sagaflow/internal/catalog"
	"github.com/sagaflow/sagaflow/internal/coupon"
	"github.com/sagaflow/sagaflow/internal/meeting"
	"github.com/sagaflow/sagaflow/internal/valid"
)

// errorBody is the JSON every error response carries:
// {"error":{"code":"not_found","message":"..."}}.
type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	// Fields names each bad field of a 400 (code "bad_request").
	Fields []valid.Problem `json:"fields,omitempty"`
}

// httpError is an error with the status and code to answer it with.
type httpError struct {
	status  int
	code    string
	message string
}

func (e *httpError) Error() string { return e.message }

func notFound(msg string) error { return &httpError{http.StatusNotFound, "not_found", msg} }

// abort answers with status, code and message and stops the chain.
func abort(c *gin.Context, status int, code, message string) {
	c.AbortWithStatusJSON(status, errorBody{Error: errorDetail{Code: code, Message: message}})
}

// fail translates err into a response: the one place where errors become
// HTTP statuses. Unknown errors are logged and answered with a 500 that
// hides their text.
func fail(c *gin.Context, err error) {
	var he *httpError
	var maxBytes *http.MaxBytesError
	var notFoundErr *serviceerror.NotFound
	var unavailable *serviceerror.Unavailable
	var netErr *net.OpError
	var verr *valid.Error
	switch {
	case errors.As(err, &verr):
		c.AbortWithStatusJSON(http.StatusBadRequest, errorBody{Error: errorDetail{Code: "bad_request", Message: verr.Error(), Fields: verr.Problems}})
	case errors.As(err, &he):
		abort(c, he.status, he.code, he.message)
	case errors.Is(err, meeting.ErrNotFound):
		abort(c, http.StatusNotFound, "not_found", "no such meeting")
	case errors.Is(err, coupon.ErrNotFound):
		abort(c, http.StatusNotFound, "not_found", "no such campaign")
	case errors.Is(err, catalog.ErrNotFound):
		abort(c, http.StatusNotFound, "not_found", "no such resource")
	case errors.Is(err, meeting.ErrJoinNotFound):
		abort(c, http.StatusNotFound, "not_found", "no such join")
	case errors.As(err, &maxBytes):
		abort(c, http.StatusRequestEntityTooLarge, "body_too_large", "request body exceeds the limit")
	case errors.As(err, &notFoundErr):
		abort(c, http.StatusNotFound, "not_found", "no such resource")
	case errors.As(err, &unavailable), errors.Is(err, context.DeadlineExceeded), errors.As(err, &netErr),
		errors.Is(err, io.EOF), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.ECONNREFUSED):
		loggerFrom(c).Warn("dependency unavailable", "error", err)
		abort(c, http.StatusServiceUnavailable, "unavailable", "a dependency did not answer in time; retry later")
	default:
		loggerFrom(c).Error("request failed", "error", err)
		abort(c, http.StatusInternalServerError, "internal", "internal error (see the server log for request "+requestID(c)+")")
	}
}
