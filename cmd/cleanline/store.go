package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/cleanline/cleanline/blocklist"
)

// openStore opens the store a URL names: file:PATH or one of the Redis forms.
// A Redis store is pinged so that "unreachable" is said once, clearly, before
// any command runs.
func openStore(ctx context.Context, url string) (blocklist.Admin, error) {
	switch {
	case strings.HasPrefix(url, "file:"):
		path := strings.TrimPrefix(url, "file:")
		if path == "" {
			return nil, fmt.Errorf("store %q: empty path; want file:PATH", url)
		}
		st, err := blocklist.OpenFile(path)
		if err != nil {
			return nil, fmt.Errorf("store %s: %w", path, err)
		}
		return st, nil
	case strings.HasPrefix(url, "redis://"), strings.HasPrefix(url, "redis-sentinel://"), strings.HasPrefix(url, "redis-cluster://"):
		opts, err := blocklist.ParseRedisURL(url)
		if err != nil {
			return nil, err
		}
		st, err := blocklist.NewRedis(opts)
		if err != nil {
			return nil, err
		}
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		if err := st.Ping(pctx); err != nil {
			st.Close()
			return nil, fmt.Errorf("%w; start Redis there or choose another store with --store file:PATH or --store redis://HOST:PORT", err)
		}
		return st, nil
	case url == "":
		return nil, errors.New("no store: pass --store file:PATH or redis://HOST:PORT")
	default:
		return nil, fmt.Errorf("store %q: want file:PATH, redis://HOST:PORT[/DB], redis-sentinel://HOST:PORT,HOST:PORT/MASTER or redis-cluster://HOST:PORT,HOST:PORT", url)
	}
}
