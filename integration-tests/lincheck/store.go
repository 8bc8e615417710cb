package main

import (
	"fmt"
	"hash/maphash"
	"math/bits"
	"sort"
)

// The sequential specification of one partition (one owner's sessions): what each
// operation does to the live sessions and what it replies.
//
// A state is the set of live sessions, kept as a slice sorted by id and never mutated
// once built (porcupine keeps old states in its cache), with the sum of its sessions'
// hashes kept alongside so that hashing is free and most unequal states are told apart
// without looking at the sessions.

type session struct {
	id      string
	token   string
	version uint64
	hash    uint64
}

type state struct {
	sessions []session // sorted by id, ids unique
	hash     uint64    // sum (mod 2^64) of the sessions' hashes
}

var (
	hashSeed   = maphash.MakeSeed()
	emptyState = &state{}
)

func mix64(h uint64) uint64 {
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}

func newSession(id string, version uint64, token string) session {
	h := maphash.String(hashSeed, id)
	h ^= bits.RotateLeft64(maphash.String(hashSeed, token), 29)
	h ^= mix64(version + 0x9e3779b97f4a7c15)
	return session{id: id, token: token, version: version, hash: mix64(h)}
}

// find returns where id is, or where it would go.
func (s *state) find(id string) (int, bool) {
	i := sort.Search(len(s.sessions), func(i int) bool { return s.sessions[i].id >= id })
	return i, i < len(s.sessions) && s.sessions[i].id == id
}

// with returns a copy of s holding e, replacing the session at i when found.
func (s *state) with(i int, found bool, e session) *state {
	n := len(s.sessions)
	if !found {
		n++
	}
	out := make([]session, n)
	copy(out, s.sessions[:i])
	out[i] = e
	h := s.hash + e.hash
	if found {
		h -= s.sessions[i].hash
		copy(out[i+1:], s.sessions[i+1:])
	} else {
		copy(out[i+1:], s.sessions[i:])
	}
	return &state{sessions: out, hash: h}
}

// without returns a copy of s without the session at i.
func (s *state) without(i int) *state {
	if len(s.sessions) == 1 {
		return emptyState
	}
	out := make([]session, 0, len(s.sessions)-1)
	out = append(out, s.sessions[:i]...)
	out = append(out, s.sessions[i+1:]...)
	return &state{sessions: out, hash: s.hash - s.sessions[i].hash}
}

func statesEqual(a, b *state) bool {
	if a == b {
		return true
	}
	if a.hash != b.hash || len(a.sessions) != len(b.sessions) {
		return false
	}
	for i := range a.sessions {
		x, y := &a.sessions[i], &b.sessions[i]
		if x.id != y.id || x.version != y.version || x.token != y.token {
			return false
		}
	}
	return true
}

// apply runs a mutating operation on s: the state after it and the reply it gives.
// s is returned unchanged (the same pointer) when the operation changes nothing.
func apply(s *state, in *Input) (*state, Output) {
	switch in.Kind {
	case Insert:
		i, live := s.find(in.ID)
		if live {
			return s, Output{OK: false}
		}
		return s.with(i, false, newSession(in.ID, 1, in.Token)), Output{OK: true}
	case Update:
		i, live := s.find(in.ID)
		if !live || s.sessions[i].version != in.Version {
			return s, Output{OK: false}
		}
		return s.with(i, true, newSession(in.ID, in.Version+1, in.Token)), Output{OK: true}
	case Set:
		i, live := s.find(in.ID)
		w := in.Version
		if live && s.sessions[i].version > w {
			w = s.sessions[i].version
		}
		w++
		return s.with(i, live, newSession(in.ID, w, in.Token)), Output{Version: w}
	case Destroy:
		if i, live := s.find(in.ID); live {
			return s.without(i), Output{}
		}
		return s, Output{}
	case Rename:
		// Renaming an id onto itself needs no case of its own: source_missing when it
		// is not live, else target_taken.
		i, fromLive := s.find(in.From)
		if !fromLive {
			return s, Output{Result: SourceMissing}
		}
		if _, toLive := s.find(in.To); toLive {
			return s, Output{Result: TargetTaken}
		}
		moved := s.sessions[i]
		next := s.without(i)
		j, _ := next.find(in.To)
		return next.with(j, false, newSession(in.To, moved.version, moved.token)), Output{Result: Moved}
	case Revoke:
		return emptyState, Output{Count: uint64(len(s.sessions))}
	}
	panic(fmt.Sprintf("apply: %v is not a mutating kind", in.Kind))
}

// observe tells whether a read's reply is the one s gives.
func observe(s *state, in *Input, out *Output) bool {
	switch in.Kind {
	case Get:
		i, live := s.find(in.ID)
		if !live {
			return !out.Found
		}
		return out.Found && out.Version == s.sessions[i].version && out.Token == s.sessions[i].token
	case Touch:
		_, live := s.find(in.ID)
		return out.Live == live
	case List:
		if len(out.IDs) != len(s.sessions) {
			return false
		}
		for i := range s.sessions {
			if s.sessions[i].id != out.IDs[i] {
				return false
			}
		}
		return true
	}
	panic(fmt.Sprintf("observe: %v is not a read", in.Kind))
}

// applyAs applies in to s the way its recorded reply out says it went: the state after it,
// and false when the specification cannot give that reply from s. An update is a
// compare-and-swap on the version, and a store may be stricter: when the update names the
// value its record was read with (Read) and another value is stored at that version (the
// session was destroyed and written anew, an ABA), refusing it loses nothing.
func applyAs(s *state, in *Input, out *Output) (*state, bool) {
	next, reply := apply(s, in)
	if sameReply(in.Kind, out, &reply) {
		return next, true
	}
	if in.Kind == Update && !out.OK && in.Read != "" {
		if i, live := s.find(in.ID); live && s.sessions[i].token != in.Read {
			return s, true
		}
	}
	return nil, false
}

// sameReply compares a mutating operation's recorded reply with the model's.
func sameReply(kind Kind, got, want *Output) bool {
	switch kind {
	case Insert, Update:
		return got.OK == want.OK
	case Set:
		return got.Version == want.Version
	case Destroy:
		return true
	case Rename:
		return got.Result == want.Result
	case Revoke:
		return got.Count == want.Count
	}
	return false
}
