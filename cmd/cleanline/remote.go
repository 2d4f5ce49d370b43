package main

import (
	"context"

	"github.com/cleanline/cleanline/cmd/internal/admin"
)

// runningService is the API of the cleanline serve answering at
// admin.listen; nil when the config names none or nothing answers there.
func (e *env) runningService(ctx context.Context) (admin.API, error) {
	return nil, nil
}
