package wechattest

import (
	"sync"
	"time"
)

// Clock is the sandbox's notion of time: a starting instant that advances at
// Speed times real time, and can be moved forward at will. Speed 0 freezes
// it, so a test controls time entirely with Advance.
type Clock struct {
	mu        sync.Mutex
	realStart time.Time
	simStart  time.Time
	speed     float64
}

// NewClock returns a clock showing start and running at speed (0 = frozen).
func NewClock(start time.Time, speed float64) *Clock {
	if speed < 0 {
		speed = 0
	}
	return &Clock{realStart: time.Now(), simStart: start, speed: speed}
}

// Now returns the sandbox time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nowLocked()
}

func (c *Clock) nowLocked() time.Time {
	elapsed := time.Since(c.realStart)
	return c.simStart.Add(time.Duration(float64(elapsed) * c.speed))
}

// Advance moves the clock forward by d (backwards for a negative d, which
// tests of clock skew may want).
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.simStart = c.nowLocked().Add(d)
	c.realStart = time.Now()
}

// Set moves the clock to t.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.simStart = t
	c.realStart = time.Now()
}

// SetSpeed changes how many sandbox seconds pass per real second from now
// on; 0 freezes the clock. Negative speeds are treated as 0.
func (c *Clock) SetSpeed(speed float64) {
	if speed < 0 {
		speed = 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.simStart = c.nowLocked()
	c.realStart = time.Now()
	c.speed = speed
}

// Speed returns the current speed.
func (c *Clock) Speed() float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.speed
}
