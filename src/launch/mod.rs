//! The launch plan: what a start creates, as plain data.
