package registry

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/gantryhq/gantry/internal/errdefs"
)

// Errors of reading a request body: the client's fault, never the
// server's. The operation's own code (BLOB_UPLOAD_INVALID,
// MANIFEST_INVALID) goes with them in errors.go.
var (
	// errBodyIncomplete: the body ended before its Content-Length or its
	// last chunk (the client closed the connection, or sent garbage).
	errBodyIncomplete = errdefs.New("request body incomplete", errdefs.ErrInvalid)
	// errBodyStalled: no byte of the body arrived within the server's body
	// timeout.
	errBodyStalled = errdefs.New("request body stalled", errdefs.ErrInvalid)
)

// requestBody wraps a request's body: its read errors become
// errBodyIncomplete or errBodyStalled, and it records whether the body
// was read to its end.
type requestBody struct {
	io.ReadCloser
	done bool
}

func (b *requestBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	switch {
	case err == nil:
	case err == io.EOF:
		b.done = true
	case errors.Is(err, os.ErrDeadlineExceeded):
		err = fmt.Errorf("%w: %w", errBodyStalled, err)
	default:
		err = fmt.Errorf("%w: %w", errBodyIncomplete, err)
	}
	return n, err
}

// refusedBodyGrace is how long the server may go on reading the body of
// a refused request after answering it (see dropBody).
const refusedBodyGrace = time.Second

// dropBody makes the server answer a request whose body nobody will read
// at once, and close the connection. Otherwise Go's server would first
// read up to 256 KiB of the body, with no deadline: a client refused
// before it sends its body (an unauthenticated PUT) would hold the
// connection for as long as it likes. After the answer the server still
// reads what arrives within refusedBodyGrace, so that a client that did
// send its body gets the answer rather than a reset. HTTP/2 streams need
// none of this: their server never waits for a body.
func dropBody(w http.ResponseWriter, r *http.Request) {
	if r.ProtoMajor != 1 {
		return
	}
	w.Header().Set("Connection", "close")
	// Not every ResponseWriter has deadlines (http.ErrNotSupported): the
	// Connection header alone then keeps the answer from waiting.
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(refusedBodyGrace))
}
