package lapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/portsentry-nft/portsentry-nft/internal/bouncerapi"
)

// The shapes of CrowdSec's local API (pkg/models/localapi_swagger.yaml),
// as far as pushing alerts needs them.

// loginRequest is a WatcherAuthRequest.
type loginRequest struct {
	MachineID string   `json:"machine_id"`
	Password  string   `json:"password"`
	Scenarios []string `json:"scenarios,omitempty"`
}

// loginResponse is a WatcherAuthResponse.
type loginResponse struct {
	Code   int    `json:"code"`
	Expire string `json:"expire"`
	Token  string `json:"token"`
}

// alert is an Alert, as POST /v1/alerts takes it. The LAPI requires each
// field without omitempty (an empty string or 0 is given).
type alert struct {
	Scenario        string     `json:"scenario"`
	ScenarioHash    string     `json:"scenario_hash"`
	ScenarioVersion string     `json:"scenario_version"`
	Message         string     `json:"message"`
	EventsCount     int32      `json:"events_count"`
	StartAt         string     `json:"start_at"`
	StopAt          string     `json:"stop_at"`
	Capacity        int32      `json:"capacity"`
	Leakspeed       string     `json:"leakspeed"`
	Simulated       bool       `json:"simulated"`
	Remediation     bool       `json:"remediation"`
	Events          []event    `json:"events"`
	Source          source     `json:"source"`
	Decisions       []decision `json:"decisions,omitempty"`
	Meta            []meta     `json:"meta,omitempty"`
}

// source is a Source: scope Ip, the address as value and ip.
type source struct {
	Scope string `json:"scope"`
	Value string `json:"value"`
	IP    string `json:"ip,omitempty"`
}

// event is an Event: a time and what was seen then.
type event struct {
	Timestamp string `json:"timestamp"`
	Meta      []meta `json:"meta"`
}

// meta is one item of a Meta.
type meta struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// decision is a Decision a machine pushes with its alert.
type decision struct {
	Origin   string `json:"origin"`
	Type     string `json:"type"`
	Scope    string `json:"scope"`
	Value    string `json:"value"`
	Duration string `json:"duration"`
	Scenario string `json:"scenario"`
}

// maxToken bounds the token a login answers (a JWT of a few hundred
// bytes); maxAnswer bounds any answer read.
const (
	maxToken  = 8 << 10
	maxAnswer = 1 << 20
)

// errNoToken: a login answered 200 without a token.
var errNoToken = errors.New("the login's answer has no token")

// parseLogin reads a login's answer: the token, and when it expires (the
// zero time when the answer does not say, or says it in a form not
// understood: the token is then used until refused).
func parseLogin(body []byte) (token string, expire time.Time, err error) {
	var r loginResponse
	if err := json.Unmarshal(body, &r); err != nil {
		return "", time.Time{}, fmt.Errorf("the login's answer: %w", err)
	}
	switch {
	case r.Token == "":
		return "", time.Time{}, errNoToken
	case len(r.Token) > maxToken || !headerSafe(r.Token):
		return "", time.Time{}, fmt.Errorf("the login's answer: a token of %d bytes that cannot be sent back", len(r.Token))
	}
	expire, perr := time.Parse(time.RFC3339, r.Expire)
	if perr != nil {
		expire = time.Time{}
	}
	return r.Token, expire, nil
}

// headerSafe reports whether s may go in an HTTP header as it is:
// printable ASCII.
func headerSafe(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

// parseAlertIDs reads POST /v1/alerts' answer (AddAlertsResponse: the
// alerts' ids) and returns how many alerts it took.
func parseAlertIDs(body []byte) (int, error) {
	var ids []json.RawMessage
	if err := json.Unmarshal(body, &ids); err != nil {
		return 0, fmt.Errorf("the alerts' answer: %w", err)
	}
	return len(ids), nil
}

// parseMessage reads the message of an ErrorResponse, for the log; "" when
// there is none. It is cut to a line's length.
func parseMessage(body []byte) string {
	var r struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(body, &r) != nil {
		return ""
	}
	m := []rune(r.Message)
	if len(m) > 200 {
		m = m[:200]
	}
	out := make([]rune, 0, len(m))
	for _, c := range m {
		if c < ' ' || c == 0x7f {
			c = ' '
		}
		out = append(out, c)
	}
	return string(out)
}

// Origin is the origin of the decisions pushed: this program's name, as
// the bouncer API says it too.
const Origin = bouncerapi.Origin

// parseDeleted reads DELETE /v1/decisions' answer (DeleteDecisionResponse:
// nbDeleted, a number in a string) and returns the number.
func parseDeleted(body []byte) (int, error) {
	var r struct {
		NbDeleted string `json:"nbDeleted"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return 0, fmt.Errorf("the lift's answer: %w", err)
	}
	n, err := strconv.Atoi(r.NbDeleted)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("the lift's answer: nbDeleted %q is not a count", r.NbDeleted)
	}
	return n, nil
}
