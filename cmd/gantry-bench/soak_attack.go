package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
)

// Attackers come from addresses of their own on loopback, as they would
// from other machines: the brute-force lockout is per user and address, so
// the soak's own clients on 127.0.0.1 must keep working while the admin is
// locked out on 127.0.0.2.
var (
	floodAddr = net.IPv4(127, 0, 0, 2)
	slowAddr  = net.IPv4(127, 0, 0, 3)
)

// dialFrom returns a dialer whose connections leave from ip.
func dialFrom(ip net.IP) *net.Dialer {
	return &net.Dialer{LocalAddr: &net.TCPAddr{IP: ip}, Timeout: 5 * time.Second}
}

// wrongPasswords sends wrong admin passwords and unknown users, at most
// 100 a second, and counts the answers (401, then 429 once locked out).
func (s *soak) wrongPasswords(ctx context.Context, rng *rand.Rand) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DialContext = dialFrom(floodAddr).DialContext
	c := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	defer tr.CloseIdleConnections()
	for sleep(ctx, 10*time.Millisecond) {
		user := "admin"
		if rng.IntN(4) == 0 {
			user = "nosuch"
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.reg+"/v2/", nil)
		req.SetBasicAuth(user, fmt.Sprintf("wrong-%d", rng.Uint32()))
		resp, err := c.Do(req)
		if err != nil {
			if ctx.Err() == nil && !s.restarting() {
				s.problem("wrong password: %v", err)
			}
			continue
		}
		resp.Body.Close()
		switch resp.StatusCode {
		case http.StatusUnauthorized, http.StatusTooManyRequests:
			s.count(fmt.Sprintf("wrong password → %d", resp.StatusCode))
		default:
			s.problem("wrong password for %s: %s", user, resp.Status)
		}
	}
}

// rawRequest sends a request head (and part of a body) on a connection of
// its own from slowAddr and returns the connection.
func (s *soak) rawRequest(ctx context.Context, method, path string, auth bool, contentLength int, body []byte) (net.Conn, error) {
	host := strings.TrimPrefix(s.reg, "http://")
	conn, err := dialFrom(slowAddr).DialContext(ctx, "tcp", host)
	if err != nil {
		return nil, err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n", method, path, host, contentLength)
	if auth {
		fmt.Fprintf(&b, "Authorization: Basic %s\r\n", base64.StdEncoding.EncodeToString([]byte("admin:"+s.srv.password)))
	}
	b.WriteString("\r\n")
	if _, err := conn.Write(append([]byte(b.String()), body...)); err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

// answer reads the response on conn, waiting at most wait; EOF (the
// server closed the connection) counts as an answer with status 0.
func answer(conn net.Conn, wait time.Duration) (int, time.Duration, error) {
	start := time.Now()
	conn.SetReadDeadline(start.Add(wait))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return 0, time.Since(start), err
		}
		return 0, time.Since(start), nil
	}
	resp.Body.Close()
	return resp.StatusCode, time.Since(start), nil
}

// slowBodies sends, every few seconds, an unauthenticated upload whose body
// never comes (refused before the body is read) and an authenticated chunk
// that stalls after 1 KiB (cut after the server's body timeout).
func (s *soak) slowBodies(ctx context.Context, rng *rand.Rand) {
	for sleep(ctx, 5*time.Second) {
		if s.restarting() {
			continue
		}
		conn, err := s.rawRequest(ctx, http.MethodPut, "/v2/soak/slow/blobs/uploads/x?digest="+digest.FromString("x").String(), false, 1<<20, nil)
		if err != nil {
			s.failed("unauthenticated slow body", err)
			continue
		}
		status, took, err := answer(conn, 10*time.Second)
		conn.Close()
		switch {
		case err != nil:
			s.failed("unauthenticated slow body", fmt.Errorf("no answer in %s: %w", took, err))
		case status != http.StatusUnauthorized:
			s.failed("unauthenticated slow body", fmt.Errorf("status %d, want 401 before the body", status))
		default:
			s.count("unauthenticated slow body → 401 before its body")
		}

		resp, err := s.call(ctx, http.MethodPost, "/v2/soak/slow/blobs/uploads/", nil, "")
		if err != nil || resp.StatusCode != http.StatusAccepted {
			if ctx.Err() == nil {
				s.failed("stalled body", fmt.Errorf("starting an upload: %v %v", err, resp.Response != nil && resp.StatusCode != 0))
			}
			continue
		}
		loc := resp.Header.Get("Location")
		if i := strings.Index(loc, "/v2/"); i > 0 {
			loc = loc[i:]
		}
		conn, err = s.rawRequest(ctx, http.MethodPatch, loc, true, 1<<20, randomBytes(rng, 1<<10))
		if err != nil {
			s.failed("stalled body", err)
			continue
		}
		status, took, err = answer(conn, s.cfg.bodyTimeout+15*time.Second)
		conn.Close()
		if err != nil {
			s.failed("stalled body", fmt.Errorf("not cut after %s (body timeout %s): %w", took.Round(time.Millisecond), s.cfg.bodyTimeout, err))
			continue
		}
		s.count(fmt.Sprintf("stalled body cut (status %d)", status))
	}
}

// truncatedBodies sends, every couple of seconds, a monolithic upload that
// declares 64 KiB and ends after half of it: the server must answer 400 and
// store nothing.
func (s *soak) truncatedBodies(ctx context.Context, rng *rand.Rand) {
	for sleep(ctx, 2*time.Second) {
		if s.restarting() {
			continue
		}
		full := randomBytes(rng, 64<<10)
		conn, err := s.rawRequest(ctx, http.MethodPost, "/v2/soak/truncated/blobs/uploads/?digest="+digest.FromBytes(full).String(), true, len(full), full[:len(full)/2])
		if err != nil {
			s.failed("truncated body", err)
			continue
		}
		conn.(*net.TCPConn).CloseWrite()
		status, took, err := answer(conn, 30*time.Second)
		conn.Close()
		switch {
		case err != nil:
			s.failed("truncated body", fmt.Errorf("no answer in %s: %w", took, err))
		case status != http.StatusBadRequest:
			s.failed("truncated body", fmt.Errorf("status %d, want 400", status))
		default:
			s.count("truncated body → 400")
		}
	}
}
