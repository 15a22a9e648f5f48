package maintner

import (
	"encoding/binary"
	"math/rand/v2"
)

// commitTable is the set of commits of a repository, by hash. A large
// project has hundreds of thousands, and loading its log looks every
// one up and inserts it, on the one goroutine that applies records, so
// the table is made for that: open addressing with linear probing, a
// slot index taken from the hash's own bytes (git hashes are uniformly
// distributed, so they need no hashing beyond a per-table random
// multiplier, which keeps crafted hashes from piling into one run of
// slots), and beside each pointer the eight bytes of the hash the index
// is taken from, so that a probe rarely reads a commit it does not want
// and growing never reads one at all. Finding and inserting is one
// probe sequence, and the table takes about half the memory of a
// map[GitHash]*GitCommit. Commits are never removed.
type commitTable struct {
	slots []commitSlot // len is a power of two, or 0
	n     int
	mul   uint64 // odd, chosen once; the slot of h is the top bits of hashKey(h)*mul
	shift uint8
}

// commitSlot is 16 bytes, as a 4-byte tag beside the pointer would be
// with its padding.
type commitSlot struct {
	key uint64 // hashKey of c.Hash
	c   *GitCommit
}

// Len returns how many commits the table holds.
func (t *commitTable) Len() int { return t.n }

// hashKey returns the bytes of h the table indexes by.
func hashKey(h *GitHash) uint64 { return binary.LittleEndian.Uint64(h[:8]) }

// find returns the slot holding h, or the empty slot where it belongs.
func (t *commitTable) find(h *GitHash) *commitSlot {
	x := hashKey(h)
	mask := uint64(len(t.slots) - 1)
	for i := (x * t.mul) >> t.shift; ; i = (i + 1) & mask {
		s := &t.slots[i]
		if s.c == nil || s.key == x && s.c.Hash == *h {
			return s
		}
	}
}

// Get returns the commit with hash h, or nil.
func (t *commitTable) Get(h GitHash) *GitCommit {
	if t.n == 0 {
		return nil
	}
	return t.find(&h).c
}

// Slot returns the slot of h, which holds the commit with that hash or
// nil; a nil slot must be filled with Fill before the table is used
// again. Looking up and inserting this way is one probe sequence.
func (t *commitTable) Slot(h *GitHash) *commitSlot {
	t.grow()
	return t.find(h)
}

// Fill puts c, whose hash the table does not hold, in s, the empty slot
// Slot returned for it.
func (t *commitTable) Fill(s *commitSlot, c *GitCommit) {
	s.key = hashKey(&c.Hash)
	s.c = c
	t.n++
}

// Put adds c, replacing a commit with the same hash.
func (t *commitTable) Put(c *GitCommit) {
	t.grow()
	s := t.find(&c.Hash)
	if s.c == nil {
		t.n++
	}
	s.key = hashKey(&c.Hash)
	s.c = c
}

// grow makes room for one more commit, keeping the table at most 3/4
// full (linear probing slows down quickly beyond that).
//
// Growing moves slots without reading a commit (the slot holds the key)
// and, since the multiplier stays and a slot's index is the top bits of
// its product, in nearly ascending order of their new index: a pass
// over the new table rather than a cache miss per commit.
func (t *commitTable) grow() {
	if 4*(t.n+1) <= 3*len(t.slots) {
		return
	}
	old := t.slots
	size := max(64, 2*len(old))
	t.slots = make([]commitSlot, size)
	// Fresh memory from the system is not written by make; a read
	// first (probing an empty slot) would map the shared zero page,
	// and the write after it fault again and flush the TLB of every
	// CPU running the process. Writing it first faults once per page.
	clear(t.slots)
	if t.mul == 0 {
		t.mul = rand.Uint64() | 1
	}
	t.shift = uint8(64 - bitsOf(size))
	mask := uint64(size - 1)
	for _, s := range old {
		if s.c == nil {
			continue
		}
		i := (s.key * t.mul) >> t.shift
		for t.slots[i].c != nil {
			i = (i + 1) & mask
		}
		t.slots[i] = s
	}
}

// bitsOf returns log2 of a power of two.
func bitsOf(n int) int {
	b := 0
	for n > 1 {
		n >>= 1
		b++
	}
	return b
}
