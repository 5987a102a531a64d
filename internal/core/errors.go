package core

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/orgplane/orgplane/internal/store"
)

// Error is a failure the faces show to callers as-is: it carries its HTTP
// status and a stable snake_case code. Its message never holds a secret.
type Error struct {
	Status  int
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Message }

func errorf(status int, code, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

// Constructors for the statuses of the contract.
func BadRequest(format string, args ...any) *Error {
	return errorf(http.StatusBadRequest, "bad_request", format, args...)
}
func Invalid(code, format string, args ...any) *Error {
	return errorf(http.StatusBadRequest, code, format, args...)
}
func Unauthorized(format string, args ...any) *Error {
	return errorf(http.StatusUnauthorized, "unauthorized", format, args...)
}
func Forbidden(format string, args ...any) *Error {
	return errorf(http.StatusForbidden, "forbidden", format, args...)
}
func NotFound(what, id string) *Error {
	return errorf(http.StatusNotFound, "not_found", "%s %q not found", what, id)
}
func Conflict(format string, args ...any) *Error {
	return errorf(http.StatusConflict, "conflict", format, args...)
}
func Refused(code, format string, args ...any) *Error {
	return errorf(http.StatusUnprocessableEntity, code, format, args...)
}
func Unavailable(format string, args ...any) *Error {
	return errorf(http.StatusServiceUnavailable, "store_unavailable", format, args...)
}

// AsError turns any error into an *Error: store sentinels map to their
// statuses, anything else is an internal error whose detail stays in the
// server log.
func AsError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	switch {
	case errors.Is(err, store.ErrUnavailable):
		return Unavailable("the store is unavailable; try again shortly")
	case errors.Is(err, store.ErrNotFound):
		return errorf(http.StatusNotFound, "not_found", "not found")
	case errors.Is(err, store.ErrConflict):
		return Conflict("conflicts with the current state")
	}
	return errorf(http.StatusInternalServerError, "internal", "internal error")
}
