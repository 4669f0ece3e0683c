package imapauth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"hash/maphash"
	"sync"
	"time"
)

// Cache remembers successful logins for a while so that a burst of SMTP
// sessions of one user costs one IMAP login. It keeps, per user, a random
// salt and SHA-256(salt || password), never the password. A failed login of
// the user forgets the entry at once. After a password change the old
// password still hits until a login with the new one replaces the entry, a
// login of the user fails, or the TTL ends.
type Cache struct {
	ttl        time.Duration
	maxEntries int
	now        func() time.Time

	mu      sync.Mutex
	entries map[string]cacheEntry
	// forgets counts the Forget calls per bucket of user names, so that a
	// success judged before a rejection of the user but reported after it
	// is not remembered (see Generation). Buckets keep the memory bounded
	// whatever user names clients send; a rejection of another user of the
	// same bucket only costs one login not cached.
	forgets [256]uint64
	seed    maphash.Seed
}

type cacheEntry struct {
	salt    [16]byte
	sum     [sha256.Size]byte
	expires time.Time
}

// NewCache returns a cache whose entries live for ttl, holding at most
// maxEntries users (0: 10000).
func NewCache(ttl time.Duration, maxEntries int) *Cache {
	if maxEntries <= 0 {
		maxEntries = 10000
	}
	return &Cache{ttl: ttl, maxEntries: maxEntries, now: time.Now, entries: make(map[string]cacheEntry), seed: maphash.MakeSeed()}
}

func (c *Cache) bucket(user string) *uint64 {
	return &c.forgets[maphash.String(c.seed, user)%uint64(len(c.forgets))]
}

// Generation is taken before asking the IMAP server about user and passed
// to Remember with the answer.
func (c *Cache) Generation(user string) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return *c.bucket(user)
}

func saltedSum(salt [16]byte, password string) [sha256.Size]byte {
	h := sha256.New()
	h.Write(salt[:])
	h.Write([]byte(password))
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return sum
}

// Hit reports whether user logged in with password within the TTL.
func (c *Cache) Hit(user, password string) bool {
	c.mu.Lock()
	entry, ok := c.entries[user]
	c.mu.Unlock()
	if !ok || !c.now().Before(entry.expires) {
		return false
	}
	sum := saltedSum(entry.salt, password)
	return subtle.ConstantTimeCompare(sum[:], entry.sum[:]) == 1
}

// Remember records a successful login of a check that began at generation
// (see Generation). It records nothing when the user was forgotten since:
// that rejection is newer than this success.
func (c *Cache) Remember(user, password string, generation uint64) {
	var entry cacheEntry
	if _, err := rand.Read(entry.salt[:]); err != nil {
		return // no salt, no entry: the cache is an optimisation only
	}
	entry.sum = saltedSum(entry.salt, password)
	now := c.now()
	entry.expires = now.Add(c.ttl)
	c.mu.Lock()
	defer c.mu.Unlock()
	if *c.bucket(user) != generation {
		return
	}
	if _, exists := c.entries[user]; !exists && len(c.entries) >= c.maxEntries {
		c.evictLocked(now)
	}
	c.entries[user] = entry
}

// Forget drops user's entry; called when the server rejects a login.
func (c *Cache) Forget(user string) {
	c.mu.Lock()
	delete(c.entries, user)
	*c.bucket(user)++
	c.mu.Unlock()
}

// evictLocked drops expired entries, or when none has expired the one that
// expires first.
func (c *Cache) evictLocked(now time.Time) {
	var oldestUser string
	var oldest time.Time
	for user, entry := range c.entries {
		if !now.Before(entry.expires) {
			delete(c.entries, user)
			continue
		}
		if oldestUser == "" || entry.expires.Before(oldest) {
			oldestUser, oldest = user, entry.expires
		}
	}
	if len(c.entries) >= c.maxEntries && oldestUser != "" {
		delete(c.entries, oldestUser)
	}
}
