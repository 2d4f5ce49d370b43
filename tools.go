//go:build tools

// Package tools pins modules that parts of the tree under construction will
// import, so that concurrent work does not race on go.mod. Remove entries as
// real imports appear.
package tools

import (
	_ "github.com/emiago/sipgo"
	_ "github.com/nyaruka/phonenumbers"
	_ "github.com/pion/rtp"
	_ "github.com/pion/sdp/v3"
	_ "github.com/redis/go-redis/v9"
	_ "go.etcd.io/bbolt"
	_ "go.uber.org/goleak"
	_ "go.uber.org/zap"
	_ "gopkg.in/yaml.v3"
)
