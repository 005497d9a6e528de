package auth

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
)

// TokenPath is where the lead mounts TokenHandler on each registry's
// listener; Challenge points clients at it.
const TokenPath = "/oauth2/token"

const tokenIssuer = "gantry"

// Token uses.
const (
	useAccess  = "access"
	useRefresh = "refresh"
)

// claims are the JWT claims of bearer and refresh tokens. Access follows
// the Docker token specification.
type claims struct {
	jwt.RegisteredClaims
	Use      string        `json:"use"`
	Kind     Kind          `json:"knd,omitempty"`
	Name     string        `json:"nam,omitempty"`
	Registry string        `json:"reg"`            // the registry the token is for
	Home     string        `json:"home,omitempty"` // a token's or run's own registry
	RunID    string        `json:"run,omitempty"`
	Ref      string        `json:"ref,omitempty"`
	CredExp  int64         `json:"cexp,omitempty"` // credential expiry (Unix ns), 0: never
	Access   []accessClaim `json:"access"`
}

type accessClaim struct {
	Type    string   `json:"type"`
	Name    string   `json:"name"`
	Actions []string `json:"actions"`
}

func (c *claims) session() session {
	sess := session{kind: c.Kind, principal: c.Subject, name: c.Name, registry: c.Home, runID: c.RunID, ref: c.Ref}
	if c.CredExp != 0 {
		sess.expires = time.Unix(0, c.CredExp)
	}
	return sess
}

func (s *Service) sign(sess session, registry, service, use string, access []accessClaim, ttl time.Duration) (string, time.Time, time.Time, error) {
	now := s.now()
	exp := now.Add(ttl)
	if !sess.expires.IsZero() && sess.expires.Before(exp) {
		exp = sess.expires
	}
	c := claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    tokenIssuer,
			Subject:   sess.principal,
			ExpiresAt: jwt.NewNumericDate(exp),
			IssuedAt:  jwt.NewNumericDate(now),
			NotBefore: jwt.NewNumericDate(now.Add(-time.Minute)),
			ID:        uuid.NewString(),
		},
		Use: use, Kind: sess.kind, Name: sess.name, Registry: registry, Home: sess.registry,
		RunID: sess.runID, Ref: sess.ref, Access: access,
	}
	if service != "" {
		c.Audience = jwt.ClaimStrings{service}
	}
	if !sess.expires.IsZero() {
		c.CredExp = sess.expires.UnixNano()
	}
	if c.Access == nil && use == useAccess {
		c.Access = []accessClaim{}
	}
	t := jwt.NewWithClaims(jwt.SigningMethodHS256, c)
	t.Header["kid"] = s.signKID
	signed, err := t.SignedString(s.signKey)
	if err != nil {
		return "", time.Time{}, time.Time{}, fmt.Errorf("signing token: %w", err)
	}
	return signed, now, exp, nil
}

// parsedTTL bounds how long a verified token's claims stay in the parsed
// cache; each use still checks the token's own expiry.
const parsedTTL = time.Hour

// parseToken verifies a JWT of ours for registry and use. Clients send the
// same bearer token with every request: its verified claims are kept (by
// the token's hash) so that a request costs a map lookup, not a JWT parse
// (JSON and HMAC: an eighth of the server's CPU under a manifest load).
func (s *Service) parseToken(raw, registry, use string) (*claims, error) {
	now := s.now()
	key := sha256.Sum256([]byte(raw))
	c, ok := s.parsed.get(key, 0, now, parsedTTL)
	if !ok || !c.current(now) {
		c = new(claims)
		_, err := jwt.ParseWithClaims(raw, c, func(t *jwt.Token) (any, error) { return s.signKey, nil },
			jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
			jwt.WithIssuer(tokenIssuer),
			jwt.WithExpirationRequired(),
			jwt.WithTimeFunc(s.now),
		)
		if err != nil {
			return nil, fmt.Errorf("invalid bearer token: %w", ErrUnauthenticated)
		}
		s.parsed.put(key, c, 0, now)
	}
	if c.Use != use {
		return nil, fmt.Errorf("not an %s token: %w", use, ErrUnauthenticated)
	}
	if c.Registry != registry {
		return nil, fmt.Errorf("token was issued for registry %q, not %q: %w", c.Registry, registry, ErrUnauthenticated)
	}
	return c, nil
}

// current reports whether verified claims are valid at now, as the JWT
// parser checks them: not expired, not before their start.
func (c *claims) current(now time.Time) bool {
	return c.ExpiresAt != nil && !now.After(c.ExpiresAt.Time) && (c.NotBefore == nil || !now.Before(c.NotBefore.Time))
}

// verifyAccessToken verifies a bearer token and that its credential still
// works; it returns the session and the scopes the token carries.
func (s *Service) verifyAccessToken(ctx context.Context, registry, raw string) (session, []accessClaim, error) {
	c, err := s.parseToken(raw, registry, useAccess)
	if err != nil {
		return session{}, nil, err
	}
	sess := c.session()
	if err := s.revalidate(ctx, sess); err != nil {
		return session{}, nil, err
	}
	return sess, c.Access, nil
}

// claimsCover reports whether the scopes of a bearer token include a.
func claimsCover(granted []accessClaim, a Access) bool {
	for _, act := range a.Actions {
		ok := false
		for _, g := range granted {
			if g.Type != a.Type || g.Name != a.Name {
				continue
			}
			if slices.Contains(g.Actions, act) || act == ActionList && slices.Contains(g.Actions, ActionPull) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

// TokenHandler returns the Docker token endpoint of registry, to mount at
// TokenPath on the registry's listener. It implements
//
//   - GET ?service=…&scope=repository:name:pull,push&scope=… with HTTP Basic
//     credentials, or none for anonymous pull (Docker token authentication);
//     offline_token=true adds a refresh token;
//   - POST form grant_type=password (username, password) or
//     grant_type=refresh_token (refresh_token), with scope and
//     access_type=offline (the OAuth2 variant).
//
// The token carries the requested scopes the caller currently holds
// (granted ∩ requested); it lives WithTokenTTL (never past the credential's
// expiry) and every request made with it re-checks current grants. Answers
// are {"token","access_token","expires_in","issued_at"[,"refresh_token"]}.
func (s *Service) TokenHandler(registry string) http.Handler {
	return &tokenHandler{s: s, registry: registry}
}

type tokenHandler struct {
	s        *Service
	registry string
}

type tokenResponse struct {
	Token        string `json:"token"`
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int    `json:"expires_in"`
	IssuedAt     string `json:"issued_at"`
	RefreshToken string `json:"refresh_token,omitempty"`
	Scope        string `json:"scope,omitempty"`
}

// tokenError is an error answer of the token endpoint.
type tokenError struct {
	status int
	code   string // Docker error code
	oauth  string // OAuth2 error
	msg    string
	retry  time.Duration
}

func (h *tokenHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	var (
		sess    session
		scopes  []string
		offline bool
		refresh string
		err     error
	)
	ep := endpointOf(r)
	service := ep.Service
	switch r.Method {
	case http.MethodGet:
		q := r.URL.Query()
		scopes = q["scope"]
		offline = q.Get("offline_token") == "true"
		if v := q.Get("service"); v != "" {
			service = v
		}
		switch scheme, _ := authorization(r); scheme {
		case "":
			sess = session{kind: KindAnonymous}
		case "basic":
			user, pass, ok := r.BasicAuth()
			if !ok {
				err = fmt.Errorf("malformed basic credentials: %w", ErrUnauthenticated)
				break
			}
			sess, err = h.s.login(ctx, r, h.registry, user, pass)
		default:
			err = fmt.Errorf("the token endpoint takes Basic credentials: %w", ErrUnauthenticated)
		}
	case http.MethodPost:
		r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
		if perr := r.ParseForm(); perr != nil {
			h.fail(w, r, tokenError{status: http.StatusBadRequest, code: "UNSUPPORTED", oauth: "invalid_request", msg: "malformed form"})
			return
		}
		scopes = r.PostForm["scope"]
		offline = r.PostForm.Get("access_type") == "offline"
		if v := r.PostForm.Get("service"); v != "" {
			service = v
		}
		switch gt := r.PostForm.Get("grant_type"); gt {
		case "password":
			sess, err = h.s.login(ctx, r, h.registry, r.PostForm.Get("username"), r.PostForm.Get("password"))
		case "refresh_token":
			refresh = r.PostForm.Get("refresh_token")
			var c *claims
			if c, err = h.s.parseToken(refresh, h.registry, useRefresh); err == nil {
				sess = c.session()
				err = h.s.revalidate(ctx, sess)
			}
		default:
			h.fail(w, r, tokenError{status: http.StatusBadRequest, code: "UNSUPPORTED", oauth: "unsupported_grant_type",
				msg: fmt.Sprintf("unsupported grant_type %q: want password or refresh_token", gt)})
			return
		}
	default:
		w.Header().Set("Allow", "GET, POST")
		h.fail(w, r, tokenError{status: http.StatusMethodNotAllowed, code: "UNSUPPORTED", oauth: "invalid_request", msg: "method not allowed"})
		return
	}
	if err != nil {
		h.fail(w, r, authError(err))
		return
	}
	RecordCaller(ctx, sess.identity())
	if !ep.serves(service) {
		// A token of this registry names only this registry's services.
		h.fail(w, r, tokenError{status: http.StatusBadRequest, code: "UNSUPPORTED", oauth: "invalid_request",
			msg: fmt.Sprintf("service %q is not this registry (want %s)", service, strings.Join(ep.Services, " or "))})
		return
	}

	requested, perr := parseScopes(scopes)
	if perr != nil {
		h.fail(w, r, tokenError{status: http.StatusBadRequest, code: "UNSUPPORTED", oauth: "invalid_scope", msg: perr.Error()})
		return
	}
	if sess.kind == KindAnonymous {
		ok, err := h.s.anonymousPull(ctx, h.registry)
		if err != nil {
			h.fail(w, r, tokenError{status: http.StatusInternalServerError, code: "UNKNOWN", oauth: "server_error", msg: "internal error"})
			h.s.log.ErrorContext(ctx, "token endpoint", "registry", h.registry, "err", err)
			return
		}
		if !ok {
			h.fail(w, r, tokenError{status: http.StatusUnauthorized, code: "UNAUTHORIZED", oauth: "invalid_client", msg: "authentication required"})
			return
		}
	}
	granted, err := h.s.grantScopes(ctx, sess, h.registry, requested)
	if err != nil {
		h.s.log.ErrorContext(ctx, "token endpoint", "registry", h.registry, "err", err)
		h.fail(w, r, tokenError{status: http.StatusInternalServerError, code: "UNKNOWN", oauth: "server_error", msg: "internal error"})
		return
	}
	tok, issued, exp, err := h.s.sign(sess, h.registry, service, useAccess, granted, h.s.tokenTTL)
	if err != nil {
		h.s.log.ErrorContext(ctx, "token endpoint", "registry", h.registry, "err", err)
		h.fail(w, r, tokenError{status: http.StatusInternalServerError, code: "UNKNOWN", oauth: "server_error", msg: "internal error"})
		return
	}
	resp := tokenResponse{Token: tok, AccessToken: tok, TokenType: "Bearer", ExpiresIn: int(exp.Sub(issued).Seconds()),
		IssuedAt: issued.UTC().Format(time.RFC3339)}
	if r.Method == http.MethodPost {
		resp.Scope = strings.Join(formatClaims(granted), " ")
	}
	switch {
	case refresh != "":
		resp.RefreshToken = refresh
	case offline && sess.kind != KindAnonymous:
		if resp.RefreshToken, _, _, err = h.s.sign(sess, h.registry, service, useRefresh, nil, h.s.refreshTTL); err != nil {
			h.fail(w, r, tokenError{status: http.StatusInternalServerError, code: "UNKNOWN", oauth: "server_error", msg: "internal error"})
			return
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(resp)
}

func authError(err error) tokenError {
	var te *ThrottledError
	if errors.As(err, &te) {
		return tokenError{status: http.StatusTooManyRequests, code: "TOOMANYREQUESTS", oauth: "invalid_grant", msg: te.Error(), retry: te.RetryAfter}
	}
	if errors.Is(err, ErrUnauthenticated) {
		return tokenError{status: http.StatusUnauthorized, code: "UNAUTHORIZED", oauth: "invalid_grant", msg: err.Error()}
	}
	return tokenError{status: http.StatusInternalServerError, code: "UNKNOWN", oauth: "server_error", msg: "internal error"}
}

func (h *tokenHandler) fail(w http.ResponseWriter, r *http.Request, e tokenError) {
	if e.retry > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(e.retry.Round(time.Second)/time.Second)+1))
	}
	if e.status == http.StatusUnauthorized && r.Method == http.MethodGet {
		w.Header().Set("WWW-Authenticate", `Basic realm="gantry"`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(e.status)
	body := map[string]any{
		"errors":            []map[string]string{{"code": e.code, "message": e.msg}},
		"error":             e.oauth,
		"error_description": e.msg,
	}
	_ = json.NewEncoder(w).Encode(body)
}

// parseScopes parses Docker token scopes ("type:name:actions"; several may
// be space-separated in one parameter) and merges repeated resources.
func parseScopes(params []string) ([]accessClaim, error) {
	var out []accessClaim
	index := map[string]int{}
	for _, p := range params {
		for _, sc := range strings.Fields(p) {
			typ, rest, ok1 := strings.Cut(sc, ":")
			i := strings.LastIndex(rest, ":")
			if !ok1 || i <= 0 || typ == "" {
				return nil, fmt.Errorf("malformed scope %q: want type:name:actions", sc)
			}
			name, actions := rest[:i], rest[i+1:]
			// "repository(plugin)" style class suffixes are ignored.
			if j := strings.IndexByte(typ, '('); j > 0 {
				typ = typ[:j]
			}
			key := typ + ":" + name
			k, ok := index[key]
			if !ok {
				k = len(out)
				index[key] = k
				out = append(out, accessClaim{Type: typ, Name: name})
			}
			for _, a := range strings.Split(actions, ",") {
				if a != "" && !slices.Contains(out[k].Actions, a) {
					out[k].Actions = append(out[k].Actions, a)
				}
			}
		}
	}
	return out, nil
}

// grantScopes returns the part of requested that sess currently holds.
// "pull" is granted with content/read or metadata/read (metadata/read only
// lists tags: each request re-checks the precise action).
func (s *Service) grantScopes(ctx context.Context, sess session, registry string, requested []accessClaim) ([]accessClaim, error) {
	out := []accessClaim{}
	for _, req := range requested {
		var acts []string
		switch req.Type {
		case TypeRepository:
			if !repositoryName.MatchString(req.Name) {
				continue
			}
			set, err := s.repoGrants(ctx, sess, registry, req.Name)
			if err != nil {
				return nil, err
			}
			want := req.Actions
			if slices.Contains(want, "*") {
				want = []string{ActionPull, ActionPush, ActionDelete}
			}
			for _, a := range want {
				switch {
				case a == ActionPull && set&(aContentRead|aMetadataRead) != 0,
					a == ActionPush && set&aContentWrite != 0,
					a == ActionDelete && set&aContentDelete != 0:
					if !slices.Contains(acts, a) {
						acts = append(acts, a)
					}
				}
			}
		case TypeRegistry:
			if req.Name != CatalogName || !slices.Contains(req.Actions, ActionCatalog) {
				continue
			}
			ok, err := s.catalogGrant(ctx, sess, registry)
			if err != nil {
				return nil, err
			}
			if ok {
				acts = []string{ActionCatalog}
			}
		}
		if len(acts) > 0 {
			out = append(out, accessClaim{Type: req.Type, Name: req.Name, Actions: acts})
		}
	}
	return out, nil
}

func formatClaims(cs []accessClaim) []string {
	out := make([]string, 0, len(cs))
	for _, c := range cs {
		out = append(out, c.Type+":"+c.Name+":"+strings.Join(c.Actions, ","))
	}
	return out
}
