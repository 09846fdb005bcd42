package lapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/portsentry-nft/portsentry-nft/internal/config"
)

// Credentials are a machine's: the LAPI's base URL, its machine_id and
// its password.
type Credentials struct {
	URL       string
	MachineID string
	Password  config.Secret
}

// refreshBefore is how long before its expiry a token is taken again.
const refreshBefore = time.Minute

// UserAgent is how a machine names itself to the LAPI: NAME/VERSION,
// with exactly one slash (crowdsec 1.4.6 refuses a login with any other
// User-Agent, and cscli machines list shows the version).
func UserAgent(version string) string {
	v := strings.Map(func(r rune) rune {
		if r == '/' || r <= ' ' || r > '~' {
			return '-'
		}
		return r
	}, version)
	if v == "" {
		v = "dev"
	}
	return "portsentry-nft/" + v
}

// client is a machine's session with a LAPI: its token, taken again when
// the credentials change, when it is about to expire and when a request is
// refused with 401. Not safe for concurrent use (the Pusher's one
// goroutine uses it).
type client struct {
	http  *http.Client
	now   func() time.Time
	agent string      // the User-Agent
	creds Credentials // those the token was given for
	token string
	// expire is the token's expiry as the login said it (zero: unknown,
	// used until refused).
	expire time.Time
	Logins uint64 // logins that gave a token
}

// rejectedError is an answer that sending the same again cannot change (a
// 4xx other than 401, 408 and 429): what was sent is given up.
type rejectedError struct {
	what   string
	status int
	msg    string
}

func (e *rejectedError) Error() string {
	if e.msg == "" {
		return fmt.Sprintf("%s: refused: %d %s", e.what, e.status, http.StatusText(e.status))
	}
	return fmt.Sprintf("%s: refused: %d %s: %s", e.what, e.status, http.StatusText(e.status), e.msg)
}

// errUnauthorized: the LAPI refused the token (401).
var errUnauthorized = errors.New("the local API refused the token (401)")

// push sends alerts (a JSON array) as the machine of creds: it logs in
// when it has no token for them or the token is about to expire, and once
// more when the LAPI refuses the token. It returns how many alerts the
// LAPI took.
func (c *client) push(ctx context.Context, creds Credentials, alerts []byte) (int, error) {
	if err := c.session(ctx, creds); err != nil {
		return 0, err
	}
	n, err := c.post(ctx, alerts)
	if errors.Is(err, errUnauthorized) {
		if err := c.login(ctx); err != nil {
			return 0, err
		}
		n, err = c.post(ctx, alerts)
	}
	return n, err
}

// lift deletes the machine's ban of addr for scenario (DELETE
// /v1/decisions?ip=&origin=&scenario=: this program's ban only, not one
// of CrowdSec's own for the same address), logging in as push does. It
// returns how many decisions the LAPI deleted.
func (c *client) lift(ctx context.Context, creds Credentials, addr, scenario string) (int, error) {
	if err := c.session(ctx, creds); err != nil {
		return 0, err
	}
	q := url.Values{"ip": {addr}, "origin": {Origin}, "scenario": {scenario}}
	n, err := c.deleteDecisions(ctx, q)
	if errors.Is(err, errUnauthorized) {
		if err := c.login(ctx); err != nil {
			return 0, err
		}
		n, err = c.deleteDecisions(ctx, q)
	}
	return n, err
}

// deleteDecisions sends the DELETE with the token.
func (c *client) deleteDecisions(ctx context.Context, q url.Values) (int, error) {
	status, answer, err := c.do(ctx, http.MethodDelete, "v1/decisions?"+q.Encode(), nil, c.token)
	if err != nil {
		return 0, fmt.Errorf("lift a ban: %w", err)
	}
	if err := c.answered(status, answer, "lift a ban", http.StatusOK); err != nil {
		return 0, err
	}
	return parseDeleted(answer)
}

// session logs in when there is no token for creds or it is about to
// expire.
func (c *client) session(ctx context.Context, creds Credentials) error {
	if creds != c.creds {
		c.creds, c.token = creds, ""
	}
	if c.token == "" || (!c.expire.IsZero() && !c.now().Before(c.expire.Add(-refreshBefore))) {
		return c.login(ctx)
	}
	return nil
}

// answered says what an answer of status means: nil for ok, the token
// refused, refused for good (a 4xx other than 401, 408 and 429), or a
// failure worth another try.
func (c *client) answered(status int, answer []byte, what string, ok int) error {
	switch {
	case status == ok || status == http.StatusOK:
		return nil
	case status == http.StatusUnauthorized:
		c.token = ""
		return errUnauthorized
	case status >= 400 && status < 500 && status != http.StatusRequestTimeout && status != http.StatusTooManyRequests:
		return &rejectedError{what: what, status: status, msg: parseMessage(answer)}
	}
	return fmt.Errorf("%s: %d %s %s", what, status, http.StatusText(status), parseMessage(answer))
}

// login takes a token for c.creds.
func (c *client) login(ctx context.Context) error {
	c.token = ""
	body, err := json.Marshal(loginRequest{MachineID: c.creds.MachineID, Password: c.creds.Password.Reveal()})
	if err != nil {
		return err
	}
	status, answer, err := c.do(ctx, http.MethodPost, "v1/watchers/login", body, "")
	if err != nil {
		return fmt.Errorf("login as %q: %w", c.creds.MachineID, err)
	}
	if status != http.StatusOK {
		return fmt.Errorf("login as %q: %d %s %s", c.creds.MachineID, status, http.StatusText(status), parseMessage(answer))
	}
	token, expire, err := parseLogin(answer)
	if err != nil {
		return fmt.Errorf("login as %q: %w", c.creds.MachineID, err)
	}
	c.token, c.expire = token, expire
	c.Logins++
	return nil
}

// post sends the alerts with the token.
func (c *client) post(ctx context.Context, alerts []byte) (int, error) {
	status, answer, err := c.do(ctx, http.MethodPost, "v1/alerts", alerts, c.token)
	if err != nil {
		return 0, fmt.Errorf("push alerts: %w", err)
	}
	if err := c.answered(status, answer, "push alerts", http.StatusCreated); err != nil {
		return 0, err
	}
	return parseAlertIDs(answer)
}

// do sends body (nil: none) to path (and query) under the LAPI's URL,
// with the token when there is one, and reads a bounded answer.
func (c *client) do(ctx context.Context, method, path string, body []byte, token string) (int, []byte, error) {
	path, query, _ := strings.Cut(path, "?")
	u, err := url.JoinPath(c.creds.URL, path)
	if err != nil {
		return 0, nil, err
	}
	if query != "" {
		u += "?" + query
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return 0, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("User-Agent", c.agent)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return 0, nil, fmt.Errorf("read the answer: %w", err)
	}
	return resp.StatusCode, answer, nil
}

// newHTTPClient is the client a Pusher uses by default: bounded in time,
// and following no redirect (the password goes to the configured URL
// only).
func newHTTPClient() *http.Client {
	return &http.Client{
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}
