package api

import "sync/atomic"

// Keyring is the tokens the API accepts, replaced whole by a reload:
// a request is checked against the tokens in force when it arrives, and a
// token a reload removed is refused (401) from the next request on.
type Keyring struct {
	p atomic.Pointer[keyring]
}

// NewKeyring checks tokens (Token.Validate, names and secrets unique) and
// holds them.
func NewKeyring(tokens []Token) (*Keyring, error) {
	k := &Keyring{}
	return k, k.Set(tokens)
}

// Set replaces the tokens; when one is wrong it says which, and the
// tokens in force stay.
func (k *Keyring) Set(tokens []Token) error {
	r, err := newKeyring(tokens)
	if err != nil {
		return err
	}
	k.p.Store(r)
	return nil
}

// load is the tokens in force.
func (k *Keyring) load() *keyring { return k.p.Load() }
