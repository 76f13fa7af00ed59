package store

// SeatLock is the lock a seat transaction takes on its meeting's row.
const SeatLock = seatLock
