package blocklist

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// ParseRedisURL reads one of
//
//	redis://[user:pass@]host:port[/db]
//	redis-sentinel://[user:pass@]host:port[,host:port...]/mastername[/db]
//	redis-cluster://[user:pass@]host:port[,host:port...]
//
// The credentials are the data server's; Sentinel credentials, timeouts and
// TLS are set on RedisOptions directly. Every error wraps ErrInvalid and says
// what is wrong; the password is never echoed.
func ParseRedisURL(s string) (RedisOptions, error) {
	var o RedisOptions
	bad := func(format string, args ...any) (RedisOptions, error) {
		return RedisOptions{}, fmt.Errorf("%w: redis URL %s: %s", ErrInvalid, redactURL(s), fmt.Sprintf(format, args...))
	}
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		return bad("missing scheme (want redis://, redis-sentinel:// or redis-cluster://)")
	}
	if i := strings.IndexAny(rest, "?#"); i >= 0 {
		return bad("query parameters and fragments are not supported")
	}
	hostPart, path, _ := strings.Cut(rest, "/")
	if i := strings.LastIndexByte(hostPart, '@'); i >= 0 {
		user, pass, hasPass := strings.Cut(hostPart[:i], ":")
		var err error
		if o.Username, err = url.PathUnescape(user); err != nil {
			return bad("bad escape in user name")
		}
		if hasPass {
			if o.Password, err = url.PathUnescape(pass); err != nil {
				return bad("bad escape in password")
			}
		}
		hostPart = hostPart[i+1:]
	}
	if hostPart == "" {
		return bad("no host:port")
	}
	o.Addrs = strings.Split(hostPart, ",")
	for _, a := range o.Addrs {
		if err := checkHostPort(a); err != nil {
			return bad("%v", err)
		}
	}
	segs := []string{}
	if path != "" {
		segs = strings.Split(path, "/")
	}
	parseDB := func(seg string) error {
		db, err := strconv.Atoi(seg)
		if err != nil || db < 0 || db > 1<<20 {
			return fmt.Errorf("database %q is not a non-negative number", seg)
		}
		o.DB = db
		return nil
	}
	switch scheme {
	case "redis":
		if len(o.Addrs) > 1 {
			return bad("several hosts need redis-sentinel:// or redis-cluster://")
		}
		switch len(segs) {
		case 0:
		case 1:
			if segs[0] != "" {
				if err := parseDB(segs[0]); err != nil {
					return bad("%v", err)
				}
			}
		default:
			return bad("path must be /db")
		}
	case "redis-sentinel":
		if len(segs) == 0 || segs[0] == "" {
			return bad("missing master name: redis-sentinel://host:port,host:port/mastername[/db]")
		}
		if len(segs) > 2 {
			return bad("path must be /mastername[/db]")
		}
		var err error
		if o.MasterName, err = url.PathUnescape(segs[0]); err != nil {
			return bad("bad escape in master name")
		}
		if len(segs) == 2 {
			if err := parseDB(segs[1]); err != nil {
				return bad("%v", err)
			}
		}
	case "redis-cluster":
		if len(segs) > 1 || len(segs) == 1 && segs[0] != "" {
			return bad("a cluster has no database or path (only database 0)")
		}
		o.Cluster = true
	default:
		return bad("unknown scheme %q (want redis, redis-sentinel or redis-cluster)", scheme)
	}
	return o, nil
}

func checkHostPort(a string) error {
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		return fmt.Errorf("%w: address %q is not host:port", ErrInvalid, a)
	}
	if host == "" {
		return fmt.Errorf("%w: address %q has no host", ErrInvalid, a)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("%w: address %q: port %q is not 1-65535", ErrInvalid, a, port)
	}
	return nil
}

// redactURL hides the password so errors can be logged.
func redactURL(s string) string {
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		return strconv.Quote(s)
	}
	host, path, hasPath := strings.Cut(rest, "/")
	if i := strings.LastIndexByte(host, '@'); i >= 0 {
		if user, _, hasPass := strings.Cut(host[:i], ":"); hasPass {
			host = user + ":xxxxx" + host[i:]
		}
	}
	if hasPath {
		host += "/" + path
	}
	return strconv.Quote(scheme + "://" + host)
}
