package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/sagaflow/sagaflow/internal/meeting"
	"github.com/sagaflow/sagaflow/internal/starter"
)

// Meetings is the PostgreSQL adapter of one tenant's meetings, seats and
// joins: every query names the tenant's schema, so a tenant never reaches
// another's rows. Safe for concurrent use.
type Meetings struct{ inSchema }

// Meetings returns the adapter for the tenant whose schema is schema.
func (s *Store) Meetings(schema string) *Meetings { return &Meetings{inSchema{s, schema}} }

// Create stores a new meeting with a fresh id and returns it.
func (m *Meetings) Create(ctx context.Context, in meeting.Meeting) (meeting.Meeting, error) {
	in.ID = uuid.NewString()
	in.Status = meeting.StatusOpen
	err := m.s.pool.QueryRow(ctx, `INSERT INTO `+m.table("meetings")+`
		(id, title, capacity, fee_amount, fee_currency, cancel_deadline) VALUES ($1, $2, $3, $4, $5, $6)
		RETURNING created_at`, in.ID, in.Title, in.Capacity, in.Fee.Amount, in.Fee.Currency, in.CancelDeadline).Scan(&in.CreatedAt)
	if err != nil {
		return meeting.Meeting{}, fmt.Errorf("create meeting: %w", err)
	}
	return in, nil
}

// Get returns the meeting, or meeting.ErrNotFound.
func (m *Meetings) Get(ctx context.Context, id string) (meeting.Meeting, error) {
	if _, err := uuid.Parse(id); err != nil {
		return meeting.Meeting{}, meeting.ErrNotFound
	}
	return scanMeeting(m.s.pool.QueryRow(ctx, `SELECT id, title, capacity, fee_amount, fee_currency, cancel_deadline,
		status, reserved, confirmed, created_at FROM `+m.table("meetings")+` WHERE id = $1`, id))
}

func scanMeeting(row pgx.Row) (meeting.Meeting, error) {
	var mt meeting.Meeting
	var id uuid.UUID
	err := row.Scan(&id, &mt.Title, &mt.Capacity, &mt.Fee.Amount, &mt.Fee.Currency, &mt.CancelDeadline,
		&mt.Status, &mt.Reserved, &mt.Confirmed, &mt.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return meeting.Meeting{}, meeting.ErrNotFound
	}
	if err != nil {
		return meeting.Meeting{}, fmt.Errorf("read meeting: %w", err)
	}
	mt.ID = id.String()
	return mt, nil
}

// Close closes the meeting: joins not yet confirmed then fail at confirm.
// Closing a closed meeting is a no-op.
func (m *Meetings) Close(ctx context.Context, id string) (meeting.Meeting, error) {
	if _, err := uuid.Parse(id); err != nil {
		return meeting.Meeting{}, meeting.ErrNotFound
	}
	return scanMeeting(m.s.pool.QueryRow(ctx, `UPDATE `+m.table("meetings")+` SET status = 'closed' WHERE id = $1
		RETURNING id, title, capacity, fee_amount, fee_currency, cancel_deadline, status, reserved, confirmed, created_at`, id))
}

// seatLock is how a seat transaction locks its meeting's row: against
// every other seat transaction and every change of the meeting, but not
// against the foreign-key checks of the rows that refer to it (FOR KEY
// SHARE), since the meeting's key does not change. With FOR UPDATE, every
// join the API recorded, and every seat inserted, waited for whichever seat
// transaction of the same meeting held the row, commit included.
const seatLock = "FOR NO KEY UPDATE"

// seatTx runs fn with the meeting's row locked (seatLock) and the join's
// seat state ("" if it has none), in one transaction.
func (m *Meetings) seatTx(ctx context.Context, meetingID, joinID string, fn func(tx pgx.Tx, mt meeting.Meeting, seat string) error) error {
	return pgx.BeginFunc(ctx, m.s.pool, func(tx pgx.Tx) error {
		mt, err := scanMeeting(tx.QueryRow(ctx, `SELECT id, title, capacity, fee_amount, fee_currency, cancel_deadline,
			status, reserved, confirmed, created_at FROM `+m.table("meetings")+` WHERE id = $1 `+seatLock, meetingID))
		if err != nil {
			return err
		}
		var seat string
		err = tx.QueryRow(ctx, `SELECT state FROM `+m.table("seats")+` WHERE join_id = $1`, joinID).Scan(&seat)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("read seat %s: %w", joinID, err)
		}
		return fn(tx, mt, seat)
	})
}

// Reserve takes a seat for the join, atomically against the capacity. It is
// idempotent: a join that holds a seat keeps it. It fails with
// meeting.ErrMeetingFull, meeting.ErrMeetingClosed or meeting.ErrNotFound,
// and a join whose seat was released does not get it back.
func (m *Meetings) Reserve(ctx context.Context, meetingID, joinID, userID string) error {
	if _, err := uuid.Parse(meetingID); err != nil {
		return meeting.ErrNotFound
	}
	return m.seatTx(ctx, meetingID, joinID, func(tx pgx.Tx, mt meeting.Meeting, seat string) error {
		switch seat {
		case "reserved", "confirmed":
			return nil
		case "released":
			return fmt.Errorf("reserve %s: seat was released: %w", joinID, meeting.ErrMeetingClosed)
		}
		if mt.Status != meeting.StatusOpen {
			return meeting.ErrMeetingClosed
		}
		if mt.Reserved+mt.Confirmed >= mt.Capacity {
			return meeting.ErrMeetingFull
		}
		if _, err := tx.Exec(ctx, `INSERT INTO `+m.table("seats")+` (join_id, meeting_id, user_id, state) VALUES ($1, $2, $3, 'reserved')`,
			joinID, meetingID, userID); err != nil {
			return fmt.Errorf("reserve %s: %w", joinID, err)
		}
		_, err := tx.Exec(ctx, `UPDATE `+m.table("meetings")+` SET reserved = reserved + 1 WHERE id = $1`, meetingID)
		return err
	})
}

// Confirm turns the join's reserved seat into a confirmed one. Idempotent.
// It fails with meeting.ErrMeetingClosed if the meeting closed meanwhile and
// meeting.ErrAlreadyJoined if the user holds another confirmed seat.
func (m *Meetings) Confirm(ctx context.Context, meetingID, joinID string) error {
	return m.seatTx(ctx, meetingID, joinID, func(tx pgx.Tx, mt meeting.Meeting, seat string) error {
		switch seat {
		case "confirmed":
			return nil
		case "reserved":
		default:
			return fmt.Errorf("confirm %s: no reserved seat (%q): %w", joinID, seat, meeting.ErrMeetingClosed)
		}
		if mt.Status != meeting.StatusOpen {
			return meeting.ErrMeetingClosed
		}
		_, err := tx.Exec(ctx, `UPDATE `+m.table("seats")+` SET state = 'confirmed', updated_at = now() WHERE join_id = $1`, joinID)
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "23505" {
			return meeting.ErrAlreadyJoined
		}
		if err != nil {
			return fmt.Errorf("confirm %s: %w", joinID, err)
		}
		_, err = tx.Exec(ctx, `UPDATE `+m.table("meetings")+` SET reserved = reserved - 1, confirmed = confirmed + 1 WHERE id = $1`, meetingID)
		return err
	})
}

// Release gives the join's seat back, whether reserved or confirmed.
// Idempotent: releasing a released seat, or a join that never held one, does
// nothing.
func (m *Meetings) Release(ctx context.Context, meetingID, joinID string) error {
	if _, err := uuid.Parse(meetingID); err != nil {
		return nil
	}
	err := m.seatTx(ctx, meetingID, joinID, func(tx pgx.Tx, _ meeting.Meeting, seat string) error {
		var counter string
		switch seat {
		case "reserved":
			counter = "reserved"
		case "confirmed":
			counter = "confirmed"
		default:
			return nil
		}
		if _, err := tx.Exec(ctx, `UPDATE `+m.table("seats")+` SET state = 'released', updated_at = now() WHERE join_id = $1`, joinID); err != nil {
			return fmt.Errorf("release %s: %w", joinID, err)
		}
		_, err := tx.Exec(ctx, `UPDATE `+m.table("meetings")+` SET `+counter+` = `+counter+` - 1 WHERE id = $1`, meetingID)
		return err
	})
	if errors.Is(err, meeting.ErrNotFound) {
		return nil
	}
	return err
}

// JoinStart reads the meeting, the join recorded under joinID and whether
// the user is confirmed already. It fails with meeting.ErrNotFound.
func (m *Meetings) JoinStart(ctx context.Context, meetingID, joinID, userID string) (meeting.JoinStart, error) {
	if _, err := uuid.Parse(meetingID); err != nil {
		return meeting.JoinStart{}, meeting.ErrNotFound
	}
	var js meeting.JoinStart
	var id uuid.UUID
	var jID, jStatus, jHash *string
	mt := &js.Meeting
	err := m.s.pool.QueryRow(ctx, `SELECT m.id, m.title, m.capacity, m.fee_amount, m.fee_currency, m.cancel_deadline,
			m.status, m.reserved, m.confirmed, m.created_at,
			EXISTS (SELECT FROM `+m.table("seats")+` s WHERE s.meeting_id = m.id AND s.user_id = $3 AND s.state = 'confirmed'),
			j.id, j.status, j.request_hash
		FROM `+m.table("meetings")+` m LEFT JOIN `+m.table("joins")+` j ON j.id = $2
		WHERE m.id = $1`, meetingID, joinID, userID).Scan(&id, &mt.Title, &mt.Capacity, &mt.Fee.Amount, &mt.Fee.Currency,
		&mt.CancelDeadline, &mt.Status, &mt.Reserved, &mt.Confirmed, &mt.CreatedAt, &js.UserConfirmed, &jID, &jStatus, &jHash)
	if errors.Is(err, pgx.ErrNoRows) {
		return meeting.JoinStart{}, meeting.ErrNotFound
	}
	if err != nil {
		return meeting.JoinStart{}, fmt.Errorf("read join start: %w", err)
	}
	mt.ID = id.String()
	if jID != nil {
		js.Existing = &meeting.Join{JoinID: *jID, Status: *jStatus}
		js.ExistingHash = *jHash
	}
	return js, nil
}

// NewJoin records a join request under its id and, in the same
// transaction, the start of its saga (see internal/starter). If the id
// exists already it returns the stored join and created=false; the caller
// compares hashes to tell a retry from a conflicting reuse of the
// idempotency key.
func (m *Meetings) NewJoin(ctx context.Context, joinID, idempotencyKey, requestHash string, r meeting.JoinRequest, start starter.Start) (j meeting.Join, hash string, created bool, err error) {
	err = pgx.BeginFunc(ctx, m.s.pool, func(tx pgx.Tx) error {
		var status string
		err := tx.QueryRow(ctx, `INSERT INTO `+m.table("joins")+` (id, idempotency_key, request_hash, meeting_id, user_id, trace_id)
			VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING RETURNING status`, joinID, idempotencyKey, requestHash, r.MeetingID, r.UserID, r.TraceID).Scan(&status)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil // recorded already: read it below
		}
		if err != nil {
			return fmt.Errorf("new join: %w", err)
		}
		created = true
		j = meeting.Join{JoinID: joinID, MeetingID: r.MeetingID, UserID: r.UserID, Status: status,
			Payment: meeting.Payment{Status: meeting.PaymentNone}, Steps: []meeting.Step{}, TraceID: r.TraceID}
		hash = requestHash
		return starter.Enqueue(ctx, tx, start)
	})
	if err != nil || created {
		return j, hash, created, err
	}
	j, hash, err = m.join(ctx, joinID)
	return j, hash, false, err
}

// Join returns the stored state of a join, or meeting.ErrJoinNotFound.
func (m *Meetings) Join(ctx context.Context, joinID string) (meeting.Join, error) {
	j, _, err := m.join(ctx, joinID)
	return j, err
}

func (m *Meetings) join(ctx context.Context, joinID string) (meeting.Join, string, error) {
	var j meeting.Join
	var hash string
	var meetingID uuid.UUID
	var steps []byte
	err := m.s.pool.QueryRow(ctx, `SELECT id, meeting_id, user_id, status, reason, payment_id, payment_status, steps, request_hash, trace_id
		FROM `+m.table("joins")+` WHERE id = $1`, joinID).Scan(&j.JoinID, &meetingID, &j.UserID, &j.Status, &j.Reason,
		&j.Payment.ID, &j.Payment.Status, &steps, &hash, &j.TraceID)
	if errors.Is(err, pgx.ErrNoRows) {
		return meeting.Join{}, "", meeting.ErrJoinNotFound
	}
	if err != nil {
		return meeting.Join{}, "", fmt.Errorf("read join %s: %w", joinID, err)
	}
	j.MeetingID = meetingID.String()
	if err := json.Unmarshal(steps, &j.Steps); err != nil {
		return meeting.Join{}, "", fmt.Errorf("read join %s steps: %w", joinID, err)
	}
	return j, hash, nil
}

// SaveJoin stores the join's state (status, reason, payment and steps).
func (m *Meetings) SaveJoin(ctx context.Context, j meeting.Join) error {
	steps, err := json.Marshal(j.Steps)
	if err != nil {
		return err
	}
	tag, err := m.s.pool.Exec(ctx, `UPDATE `+m.table("joins")+` SET status = $2, reason = $3, payment_id = $4,
		payment_status = $5, steps = $6, updated_at = now() WHERE id = $1`,
		j.JoinID, j.Status, j.Reason, j.Payment.ID, j.Payment.Status, steps)
	if err != nil {
		return fmt.Errorf("save join %s: %w", j.JoinID, err)
	}
	if tag.RowsAffected() == 0 {
		return meeting.ErrJoinNotFound
	}
	return nil
}
