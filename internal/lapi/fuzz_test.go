package lapi

import (
	"strings"
	"testing"
)

// FuzzParseLogin: any login answer gives a token that can go back in a
// header, or an error; never a panic.
func FuzzParseLogin(f *testing.F) {
	f.Add([]byte(`{"code":200,"expire":"2026-12-07T18:00:52Z","token":"eyJhbGciOiJIUzI1NiJ9.eyJpZCI6InRlc3QxIn0.sig"}`))
	f.Add([]byte(`{"code":200,"expire":"soon","token":"t"}`))
	f.Add([]byte(`{"token":"a\r\nX-Evil: 1"}`))
	f.Add([]byte(`{"token":""}`))
	f.Add([]byte(`null`))
	f.Add([]byte(`[1,2]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		tok, _, err := parseLogin(body)
		if err != nil {
			if tok != "" {
				t.Fatal("a token with an error")
			}
			return
		}
		if tok == "" || len(tok) > maxToken || !headerSafe(tok) || strings.ContainsAny(tok, "\r\n") {
			t.Fatalf("token %q", tok)
		}
	})
}

// FuzzParseAnswers: the alerts' answer and an error's message; the
// message is one bounded line.
func FuzzParseAnswers(f *testing.F) {
	f.Add([]byte(`["1","2"]`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`{"message":"validation failure list:\nevents in body is required"}`))
	f.Add([]byte(`{"message":null}`))
	f.Add([]byte(`{"nbDeleted":"1"}`))
	f.Add([]byte(`{"nbDeleted":"-1"}`))
	f.Add([]byte(`"x"`))
	f.Fuzz(func(t *testing.T, body []byte) {
		if n, err := parseAlertIDs(body); n < 0 || (err != nil && n != 0) {
			t.Fatalf("%d %v", n, err)
		}
		if n, err := parseDeleted(body); n < 0 || (err != nil && n != 0) {
			t.Fatalf("deleted %d %v", n, err)
		}
		m := parseMessage(body)
		if len([]rune(m)) > 200 || strings.ContainsAny(m, "\r\n\x00") {
			t.Fatalf("message %q", m)
		}
	})
}
