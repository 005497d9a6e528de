package docker

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// jsonMessage is one message of the engine's JSON message stream (build, pull,
// push, image load).
type jsonMessage struct {
	Stream         string          `json:"stream"`
	Status         string          `json:"status"`
	ID             string          `json:"id"`
	Progress       string          `json:"progress"`
	ProgressDetail *progressDetail `json:"progressDetail"`
	Error          string          `json:"error"`
	ErrorDetail    *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"errorDetail"`
	Aux json.RawMessage `json:"aux"`
}

type progressDetail struct {
	Current int64 `json:"current"`
	Total   int64 `json:"total"`
}

// decodeMessages reads a JSON message stream from r, writes it to out as plain
// log lines while it arrives and hands every aux payload to aux (when
// non-nil). It returns the first error the stream reports.
//
// The rendering follows the docker CLI without a terminal: "stream" text is
// written verbatim (build output, already line-structured), "status" messages
// become "<id>: <status>" lines, and progress-bar updates are left out.
func decodeMessages(r io.Reader, out io.Writer, aux func(json.RawMessage) error) error {
	if out == nil {
		out = io.Discard
	}
	dec := json.NewDecoder(r)
	for {
		var m jsonMessage
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("reading engine message stream: %w", err)
		}
		if m.ErrorDetail != nil || m.Error != "" {
			se := &streamError{msg: m.Error}
			if m.ErrorDetail != nil {
				se.code = m.ErrorDetail.Code
				if m.ErrorDetail.Message != "" {
					se.msg = m.ErrorDetail.Message
				}
			}
			se.msg = strings.TrimSpace(se.msg)
			return se
		}
		if len(m.Aux) > 0 && aux != nil {
			if err := aux(m.Aux); err != nil {
				return err
			}
		}
		var line string
		switch {
		case m.Stream != "":
			line = m.Stream
		case m.Status != "":
			if m.Progress != "" || (m.ProgressDetail != nil && m.ProgressDetail.Total > 0) {
				continue // a progress-bar update
			}
			line = m.Status
			if m.ID != "" {
				line = m.ID + ": " + line
			}
			line += "\n"
		default:
			continue
		}
		if _, err := io.WriteString(out, line); err != nil {
			return fmt.Errorf("writing engine output: %w", err)
		}
	}
}

// Stream identifiers in the multiplexed (non-TTY) container stream.
const (
	streamStdin  = 0
	streamStdout = 1
	streamStderr = 2
	streamSystem = 3 // an error message of the engine
)

// demux splits the engine's multiplexed container stream into stdout and
// stderr. Each frame is an 8-byte header (stream byte, three zero bytes,
// big-endian uint32 length) followed by the payload. A frame on the system
// stream is returned as an error. Nil writers discard. It returns nil at a
// clean end of stream.
func demux(stdout, stderr io.Writer, r io.Reader) error {
	if stdout == nil {
		stdout = io.Discard
	}
	if stderr == nil {
		stderr = io.Discard
	}
	var hdr [8]byte
	buf := make([]byte, 32<<10)
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			if errors.Is(err, io.ErrUnexpectedEOF) {
				return fmt.Errorf("container stream: truncated frame header")
			}
			return err
		}
		size := int64(binary.BigEndian.Uint32(hdr[4:]))
		var dst io.Writer
		switch hdr[0] {
		case streamStdin, streamStdout:
			dst = stdout
		case streamStderr:
			dst = stderr
		case streamSystem:
			msg, err := io.ReadAll(io.LimitReader(r, min(size, 64<<10)))
			if err != nil {
				return err
			}
			return &streamError{msg: strings.TrimSpace(string(msg))}
		default:
			return fmt.Errorf("container stream: unknown stream %d (is the container a TTY?)", hdr[0])
		}
		n, err := io.CopyBuffer(dst, io.LimitReader(r, size), buf)
		if err != nil {
			return err
		}
		if n < size {
			return fmt.Errorf("container stream: truncated frame (%d of %d bytes)", n, size)
		}
	}
}
