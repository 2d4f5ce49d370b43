package admin

import (
	"container/heap"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Paging. Every list is ordered by a key of its items; a page holds the
// first Limit items whose key is after the cursor, and its Next cursor
// encodes the key of its last item. So a page is right even when the list
// changed since the page before: nothing is skipped that was there all
// along, and nothing is shown twice. Cursors are opaque to clients.

const (
	// DefaultLimit is a page's size when the request gives none.
	DefaultLimit = 100
	// MaxLimit is the largest page a request may ask for.
	MaxLimit = 1000
)

func (q ListQuery) bounds() (limit int, after string, err error) {
	limit = q.Limit
	switch {
	case limit == 0:
		limit = DefaultLimit
	case limit < 0 || limit > MaxLimit:
		return 0, "", mark(ErrInvalidArgument, fmt.Errorf("limit %d: want 1 to %d", q.Limit, MaxLimit))
	}
	if q.Cursor == "" {
		return limit, "", nil
	}
	b, err := base64.RawURLEncoding.DecodeString(q.Cursor)
	if err != nil || len(b) == 0 {
		return 0, "", mark(ErrInvalidArgument, errors.New("cursor: not one this service gave"))
	}
	return limit, string(b), nil
}

func cursorOf(key string) string { return base64.RawURLEncoding.EncodeToString([]byte(key)) }

// pageOf pages through items, in any order, by key.
func pageOf[T any](items []T, key func(T) string, q ListQuery) (Page[T], error) {
	limit, after, err := q.bounds()
	if err != nil {
		return Page[T]{}, err
	}
	var kept []T
	for _, it := range items {
		if after == "" || key(it) > after {
			kept = append(kept, it)
		}
	}
	slices.SortFunc(kept, func(a, b T) int { return strings.Compare(key(a), key(b)) })
	p := Page[T]{Items: kept}
	if p.Items == nil {
		p.Items = []T{}
	}
	if len(kept) > limit {
		p.Items = kept[:limit]
		p.Next = cursorOf(key(p.Items[limit-1]))
	}
	return p, nil
}

// pager keeps the first limit+1 items after a cursor of a stream too large
// to hold (the blocklist walk), in a max-heap by key.
type pager[T any] struct {
	limit int
	after string
	key   func(T) string
	h     keyHeap[T]
}

func newPager[T any](q ListQuery, key func(T) string) (*pager[T], error) {
	limit, after, err := q.bounds()
	if err != nil {
		return nil, err
	}
	return &pager[T]{limit: limit, after: after, key: key}, nil
}

func (p *pager[T]) add(it T) {
	k := p.key(it)
	if p.after != "" && k <= p.after {
		return
	}
	if len(p.h) <= p.limit {
		heap.Push(&p.h, keyed[T]{k, it})
		return
	}
	if k < p.h[0].k {
		p.h[0] = keyed[T]{k, it}
		heap.Fix(&p.h, 0)
	}
}

func (p *pager[T]) page() Page[T] {
	items := make([]keyed[T], len(p.h))
	copy(items, p.h)
	slices.SortFunc(items, func(a, b keyed[T]) int { return strings.Compare(a.k, b.k) })
	out := Page[T]{Items: make([]T, 0, min(len(items), p.limit))}
	for i, it := range items {
		if i == p.limit {
			out.Next = cursorOf(items[i-1].k)
			break
		}
		out.Items = append(out.Items, it.v)
	}
	return out
}

type keyed[T any] struct {
	k string
	v T
}

// keyHeap is a max-heap by key: its root is the item to drop first.
type keyHeap[T any] []keyed[T]

func (h keyHeap[T]) Len() int           { return len(h) }
func (h keyHeap[T]) Less(i, j int) bool { return h[i].k > h[j].k }
func (h keyHeap[T]) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *keyHeap[T]) Push(x any)        { *h = append(*h, x.(keyed[T])) }
func (h *keyHeap[T]) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
