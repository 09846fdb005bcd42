package legacy

import (
	"slices"
	"strings"
	"testing"
)

func TestSplitCommand(t *testing.T) {
	for _, tc := range []struct {
		in       string
		argv     []string
		shellUse string // "" when argv runs without a shell
		err      string
	}{
		{in: "/bin/true", argv: []string{"/bin/true"}},
		{in: "  /a  b\tc  ", argv: []string{"/a", "b", "c"}},
		{in: "/a 'b c' d\\ e", argv: []string{"/a", "b c", "d e"}},
		{in: `/a "b $TARGET$ c"`, argv: []string{"/a", "b $TARGET$ c"}},
		{in: `/a "x\"y" "\q"`, argv: []string{"/a", `x"y`, `\q`}},
		{in: "/a $TARGET$ $PORT$ $MODE$", argv: []string{"/a", "$TARGET$", "$PORT$", "$MODE$"}},
		{in: "/a '$HOME' ''", argv: []string{"/a", "$HOME", ""}},
		{in: "/a $ b$", argv: []string{"/a", "$", "b$"}},
		{in: "/a x=1", argv: []string{"/a", "x=1"}},
		{in: "/a b#c", argv: []string{"/a", "b#c"}},
		{in: "/a =b", argv: []string{"/a", "=b"}},
		{in: "/a | /b", shellUse: `the shell operator "|"`},
		{in: "/a && /b", shellUse: `the shell operator "&&"`},
		{in: "/a; /b", shellUse: `the shell operator ";"`},
		{in: "/a > /tmp/x", shellUse: `the shell operator ">"`},
		{in: "/a 2>&1", shellUse: `the shell operator ">&"`},
		{in: "/a &", shellUse: `the shell operator "&"`},
		{in: "/a $(id)", shellUse: "command substitution $(...)"},
		{in: "/a `id`", shellUse: "command substitution `...`"},
		{in: `/a "$(id)"`, shellUse: "command substitution $(...)"},
		{in: "/a $HOME", shellUse: "variable $HOME"},
		{in: "/a ${HOME}", shellUse: "variable expansion ${...}"},
		{in: "/a *.log", shellUse: `the wildcard "*"`},
		{in: "/a ~/x", shellUse: "home directory expansion ~"},
		{in: "/a # c", shellUse: "a # comment"},
		{in: "PATH=/x a", shellUse: "a variable assignment PATH="},
		{in: "/a 'b", err: "unterminated single quote"},
		{in: `/a "b`, err: "unterminated double quote"},
		{in: `/a b\`, err: "ends with a backslash"},
		{in: "   ", err: "no command"},
	} {
		argv, use, err := splitCommand(tc.in)
		switch {
		case tc.err != "":
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("splitCommand(%q) error = %v; want %q", tc.in, err, tc.err)
			}
		case err != nil:
			t.Errorf("splitCommand(%q) error = %v", tc.in, err)
		case tc.shellUse != "":
			if use != tc.shellUse || !slices.Equal(argv, []string{"/bin/sh", "-c", strings.TrimSpace(tc.in)}) {
				t.Errorf("splitCommand(%q) = %q, %q; want /bin/sh -c and %q", tc.in, argv, use, tc.shellUse)
			}
		default:
			if use != "" || !slices.Equal(argv, tc.argv) {
				t.Errorf("splitCommand(%q) = %q, %q; want %q", tc.in, argv, use, tc.argv)
			}
		}
	}
}

func TestRecognizeKillRoute(t *testing.T) {
	for _, tc := range []struct{ cmd, tool string }{
		{"/sbin/route add -host $TARGET$ reject", "route"},
		{"/usr/sbin/route add $TARGET$ 333.444.555.666 1", "route"},
		{"/usr/etc/route add $TARGET$ 127.0.0.1 1", "route"},
		{"/sbin/route add -host -blackhole $TARGET$ 127.0.0.1", "route"},
		{"/usr/sbin/route add net $TARGET$ netmask 255.255.255.0 127.0.0.1", "route"},
		{"ip -6 route add unreachable $TARGET$", "route"},
		{"/sbin/ipfwadm -I -i deny -S $TARGET$", "ipfwadm"},
		{"/sbin/ipchains -I input -s $TARGET$ -j DENY", "ipchains"},
		{"/sbin/iptables -I INPUT -s $TARGET$ -j DROP >/dev/null 2>&1", "iptables"},
		{"iptables-legacy -I INPUT -s $TARGET$ -j DROP", "iptables"},
		{"/bin/echo 'block in log on le0 from $TARGET$/32 to any' | /sbin/ipf -f -", "ipf"},
		{"printf 'block in quick from $TARGET$\\n' | pfctl -f -", "pf"},
		{"/sbin/ipfw add 1 deny all from $TARGET$:255.255.255.255 to any", "ipfw"},
		{"nft add element inet filter blocked '{ $TARGET$ }'", "nft"},
		{"nft 'add element inet filter blocked { $TARGET$ }'", "nft"},
		{"nft insert rule inet filter input ip saddr $TARGET$ drop", "nft"},
		{"doas /sbin/pfctl -t bad -T add $TARGET$", "pf"},
		// Not replaced by native blocking:
		{"/sbin/route delete $TARGET$", ""},
		{"/sbin/route add -host 10.0.0.1 reject", ""},
		{"/usr/local/bin/block $TARGET$", ""},
		{"/sbin/iptables -I INPUT -s $TARGET$ -j DROP | tee /tmp/x", ""},
		{"/sbin/iptables -I INPUT -s $TARGET$ -j DROP; mail root < /tmp/x", ""},
		{"/bin/echo 'block in from $TARGET$' | /usr/bin/logger", ""},
		{"/bin/echo $TARGET$ | /sbin/ipf -f - | cat", ""},
		{"nft list ruleset $TARGET$", ""},
		{"ipfw delete $TARGET$", ""},
		{"(iptables -I INPUT -s $TARGET$ -j DROP)", ""},
		{"/sbin/iptables -I INPUT -s '$TARGET$", ""},
	} {
		tool, ok := recognizeKillRoute(tc.cmd)
		if ok != (tc.tool != "") || tool != tc.tool {
			t.Errorf("recognizeKillRoute(%q) = %q, %v; want %q", tc.cmd, tool, ok, tc.tool)
		}
	}
}

func TestParseModes(t *testing.T) {
	for _, tc := range []struct {
		in   []string
		want Modes
		err  string
	}{
		{in: []string{"atcp,sudp"}, want: Modes{TCP: "atcp", UDP: "sudp"}},
		{in: []string{"-stcp", "UDP"}, want: Modes{TCP: "stcp", UDP: "udp"}},
		{in: []string{"audp"}, want: Modes{UDP: "audp"}},
		{in: []string{"tcp", "tcp"}, want: Modes{TCP: "tcp"}},
		{in: []string{"tcp,stcp"}, err: "two TCP modes"},
		{in: []string{"xtcp"}, err: `unknown mode "xtcp"`},
		{in: []string{","}, err: "no mode given"},
	} {
		got, err := ParseModes(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseModes(%q) error = %v; want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseModes(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
}

func TestParseDefaults(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Modes
		diag string // "" or "LINE:text" of the error or warning
	}{
		// The file Debian's postinst writes on a fresh install.
		{in: "# /etc/default/portsentry\n#\n# comments\n#\nTCP_MODE=\"tcp\"\nUDP_MODE=\"udp\"\n", want: Modes{TCP: "tcp", UDP: "udp"}},
		{in: "TCP_MODE=atcp\r\nUDP_MODE='sudp'\r\n", want: Modes{TCP: "atcp", UDP: "sudp"}},
		{in: "TCP_MODE=\"stcp\"\nUDP_MODE=\"\"\n", want: Modes{TCP: "stcp"}},
		{in: "export TCP_MODE=tcp\nTCP_MODE=\"atcp\"", want: Modes{TCP: "atcp"}, diag: "2:TCP_MODE is also set on line 1"},
		{in: "TCP_MODE=\"udp\"\n", diag: `1:TCP_MODE="udp" is not a valid mode`},
		{in: "TCP_MODE=\"$(x)\"\n", diag: "1:TCP_MODE: cannot read the value"},
		{in: "TCP_MODE=\"\"\nUDP_MODE=\"\"\n", diag: "0:neither TCP_MODE nor UDP_MODE is set"},
		{in: "\x00\x01", diag: "0:binary data"},
	} {
		got, warns, err := ParseDefaults("defaults", []byte(tc.in))
		var all Diags
		if err != nil {
			all = err.(Diags)
		} else {
			all = warns
			if got != tc.want {
				t.Errorf("ParseDefaults(%q) = %+v; want %+v", tc.in, got, tc.want)
			}
		}
		if tc.diag != "" && !matchDiag(all, Warning, tc.diag) && !matchDiag(all, Error, tc.diag) {
			t.Errorf("ParseDefaults(%q): no %q in %v", tc.in, tc.diag, all)
		}
		if tc.diag == "" && len(all) > 0 {
			t.Errorf("ParseDefaults(%q): unexpected %v", tc.in, all)
		}
	}
}

func TestParseDialect(t *testing.T) {
	for in, want := range map[string]Dialect{"": DialectAuto, "auto": DialectAuto, "1.2": Dialect12, "2.0-beta": Dialect20Beta, "BETA": Dialect20Beta, "2.x": DialectRevived, "revived": DialectRevived} {
		if got, err := ParseDialect(in); err != nil || got != want {
			t.Errorf("ParseDialect(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := ParseDialect("3.0"); err == nil {
		t.Errorf("ParseDialect(3.0) succeeded")
	}
	for _, d := range Dialects {
		if back, err := ParseDialect(d.String()); err != nil || back != d {
			t.Errorf("ParseDialect(%q) = %v, %v", d.String(), back, err)
		}
	}
}
