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
// 4xx other than 401, 408 and 429): the batch is given up.
type rejectedError struct {
	status int
	msg    string
}

func (e *rejectedError) Error() string {
	if e.msg == "" {
		return fmt.Sprintf("the local API refused the alerts: %d %s", e.status, http.StatusText(e.status))
	}
	return fmt.Sprintf("the local API refused the alerts: %d %s: %s", e.status, http.StatusText(e.status), e.msg)
}

// errUnauthorized: the LAPI refused the token (401).
var errUnauthorized = errors.New("the local API refused the token (401)")

// push sends alerts (a JSON array) as the machine of creds: it logs in
// when it has no token for them or the token is about to expire, and once
// more when the LAPI refuses the token. It returns how many alerts the
// LAPI took.
func (c *client) push(ctx context.Context, creds Credentials, alerts []byte) (int, error) {
	if creds != c.creds {
		c.creds, c.token = creds, ""
	}
	if c.token == "" || (!c.expire.IsZero() && !c.now().Before(c.expire.Add(-refreshBefore))) {
		if err := c.login(ctx); err != nil {
			return 0, err
		}
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

// login takes a token for c.creds.
func (c *client) login(ctx context.Context) error {
	c.token = ""
	body, err := json.Marshal(loginRequest{MachineID: c.creds.MachineID, Password: c.creds.Password.Reveal()})
	if err != nil {
		return err
	}
	status, answer, err := c.do(ctx, "v1/watchers/login", body, "")
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
	status, answer, err := c.do(ctx, "v1/alerts", alerts, c.token)
	switch {
	case err != nil:
		return 0, fmt.Errorf("push alerts: %w", err)
	case status == http.StatusUnauthorized:
		c.token = ""
		return 0, errUnauthorized
	case status == http.StatusCreated || status == http.StatusOK:
		return parseAlertIDs(answer)
	case status >= 400 && status < 500 && status != http.StatusRequestTimeout && status != http.StatusTooManyRequests:
		return 0, &rejectedError{status: status, msg: parseMessage(answer)}
	}
	return 0, fmt.Errorf("push alerts: %d %s %s", status, http.StatusText(status), parseMessage(answer))
}

// do POSTs body to path under the LAPI's URL, with the token when there
// is one, and reads a bounded answer.
func (c *client) do(ctx context.Context, path string, body []byte, token string) (int, []byte, error) {
	u, err := url.JoinPath(c.creds.URL, path)
	if err != nil {
		return 0, nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
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
