//! Leader-only work outside the state machine: phase two with retries, timeouts, and undo-log
//! trimming. Their decisions go back in as commands.

mod phase_two;
mod timeout;
mod undo_log;

pub use phase_two::PhaseTwo;
pub use timeout::run_timeouts;
pub use undo_log::run_undo_log_trimming;
