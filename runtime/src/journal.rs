//! Durable undo journal.
