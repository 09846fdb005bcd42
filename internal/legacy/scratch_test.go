package legacy

import (
	"fmt"
	"os"
	"testing"
)

func TestScratch(t *testing.T) {
	name := os.Getenv("CONF")
	if name == "" {
		t.Skip()
	}
	data, _ := os.ReadFile(name)
	c, err := Parse(name, data, DialectAuto)
	if err != nil {
		t.Fatal(err)
	}
	var opts Options
	if m := os.Getenv("MODE"); m != "" {
		mm, err := ParseModes([]string{m})
		if err != nil {
			t.Fatal(err)
		}
		opts.Modes = &mm
	}
	opts.IgnoreFile = os.Getenv("IGN")
	r, err := Import(c, opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range r.Warnings {
		fmt.Println(w)
	}
	fmt.Print(string(r.YAML))
}
