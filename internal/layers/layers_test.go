package layers

import (
	"encoding/json"
	"io"
	"os/exec"
	"path"
	"strings"
	"testing"
)

const module = "github.com/swarmvpn/swarmvpn/"

// allowed lists, for each package (by its path in the module; a trailing
// /... covers a folder), the module's packages it may import, in the same
// form. Tests are not held to it: they may import what they need to drive
// a package from outside.
var allowed = map[string][]string{
	"internal/wire":     nil,
	"internal/link":     nil,
	"internal/relay":    nil,
	"internal/nstest":   nil,
	"internal/socks":    {"internal/wire"},
	"internal/listener": nil,
	"internal/control":  {"internal/listener"},
	"internal/lockfile": nil,
	"internal/meter":    {"internal/relay", "internal/wire"},
	"internal/layers":   nil,
	"internal/udpbatch": nil,
	"internal/netaddr":  nil,
	"internal/testnet": {"client", "exitnet/...", "proxy", "portfwd/...", "internal/link", "internal/wire",
		"internal/relay", "internal/meter", "internal/socks"},
	"internal/statefile":         nil,
	"internal/syncbuf":           nil,
	"exitnet":                    nil,
	"exitnet/policy":             {"internal/wire", "internal/netaddr"},
	"exitnet/nat":                {"internal/netaddr", "internal/statefile"},
	"exitnet/discovery":          {"internal/link", "internal/wire", "internal/statefile"},
	"exitnet/discovery/mainline": {"internal/link", "internal/wire", "internal/netaddr"},
	"exitnet/exit":               {"exitnet/policy", "exitnet/discovery", "exitnet/discovery/mainline", "internal/link", "internal/wire", "internal/relay", "internal/meter", "internal/listener", "internal/udpbatch", "internal/netaddr", "internal/statefile"},
	"exitnet/pool":               {"exitnet/discovery", "internal/link", "internal/wire", "internal/relay", "internal/meter"},
	"proxy":                      {"internal/wire", "internal/relay", "internal/listener", "internal/udpbatch"},
	"portfwd":                    {"internal/link", "internal/wire", "internal/relay", "internal/statefile"},
	"portfwd/announce":           nil,
	"bench":                      {"internal/socks", "internal/wire", "internal/listener"},
	"ui":                         {"exitnet/exit", "internal/listener"},
	"client":                     {"exitnet/...", "proxy", "portfwd/...", "internal/link", "internal/wire", "internal/relay", "internal/meter", "internal/listener", "internal/control", "internal/lockfile"},
	"cmd/swarmvpn":               {"client", "bench", "ui", "exitnet/...", "proxy", "portfwd", "internal/link", "internal/wire", "internal/meter", "internal/listener", "internal/control", "internal/lockfile"},
}

// testOnly are packages that exist for tests: no production package may
// import them.
var testOnly = []string{"internal/testnet", "internal/nstest", "internal/layers"}

type pkg struct {
	ImportPath string
	Imports    []string
}

// TestLayers fails when a package imports one its layer does not allow,
// or when a package is missing from the table.
func TestLayers(t *testing.T) {
	pkgs := list(t)
	for _, p := range pkgs {
		name := strings.TrimPrefix(p.ImportPath, module)
		rules, ok := allowed[name]
		if !ok {
			t.Errorf("package %s is not in the layers table (internal/layers/layers_test.go): say what it may import", name)
			continue
		}
		for _, imp := range p.Imports {
			if !strings.HasPrefix(imp, module) {
				continue
			}
			dep := strings.TrimPrefix(imp, module)
			if !matches(rules, dep) {
				t.Errorf("%s imports %s, which its layer does not allow (allowed: %v)", name, dep, rules)
			}
			if matches(testOnly, dep) && !matches(testOnly, name) {
				t.Errorf("%s imports %s, which exists for tests only", name, dep)
			}
		}
	}
}

func matches(rules []string, dep string) bool {
	for _, r := range rules {
		if r == dep {
			return true
		}
		if dir, ok := strings.CutSuffix(r, "/..."); ok && (dep == dir || strings.HasPrefix(dep, dir+"/")) {
			return true
		}
	}
	return false
}

// list runs go list over the module, from its root.
func list(t *testing.T) []pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-json=ImportPath,Imports", module+"...")
	cmd.Dir = path.Join("..", "..")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkgs []pkg
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) < 10 {
		t.Fatalf("go list found %d packages; is the module root right?", len(pkgs))
	}
	return pkgs
}
