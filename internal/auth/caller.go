package auth

import (
	"context"
	"sync/atomic"
)

// Caller records who a request authenticated as, for the access log. The
// server puts one in the request context before routing (WithCaller); the
// registry handler and Authenticate record the identity they accept
// (RecordCaller); the server reads it once the handler has returned.
type Caller struct {
	id atomic.Pointer[Identity]
}

type callerKey struct{}

// WithCaller returns a context carrying a new Caller, and the Caller.
func WithCaller(ctx context.Context) (context.Context, *Caller) {
	c := &Caller{}
	return context.WithValue(ctx, callerKey{}, c), c
}

// RecordCaller records id as the caller of the request whose context is
// ctx (nothing when ctx carries no Caller, or id is anonymous).
func RecordCaller(ctx context.Context, id Identity) {
	if c, ok := ctx.Value(callerKey{}).(*Caller); ok && !id.Anonymous() {
		c.id.Store(&id)
	}
}

// Name returns the display name of the caller recorded ("admin", a token's
// name, "task:<registry>/<task>"; "" when none was).
func (c *Caller) Name() string {
	if id := c.id.Load(); id != nil {
		return id.Name
	}
	return ""
}
