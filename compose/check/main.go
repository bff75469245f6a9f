// Command check loads a compose file the way `docker compose` does (compose-go: the spec's
// schema, interpolation, .env, path resolution) and prints the normalized project as JSON, or
// the loader's error with exit status 1. tests/dashboards/test_dashboards.py runs it on
// compose/docker-compose.yml, since no Docker engine is there to run `docker compose config`.
//
//	go build -o /tmp/compose-check . && /tmp/compose-check ../docker-compose.yml
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/compose-spec/compose-go/v2/cli"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: check COMPOSE_FILE...")
		os.Exit(2)
	}
	opts, err := cli.NewProjectOptions(os.Args[1:], cli.WithOsEnv, cli.WithDotEnv)
	if err == nil {
		var out []byte
		p, lerr := opts.LoadProject(context.Background())
		if err = lerr; err == nil {
			if out, err = p.MarshalJSON(); err == nil {
				_, err = os.Stdout.Write(out)
			}
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
