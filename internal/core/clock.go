package core

import "time"

// Clock tells the time; tests give a fake one so they do not sleep.
type Clock interface{ Now() time.Time }

// SystemClock is the real clock.
type SystemClock struct{}

// Now returns the current UTC time, truncated to the store's precision.
func (SystemClock) Now() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }
