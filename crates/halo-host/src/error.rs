use std::io;

/// Why opening a link or changing a process property failed.
///
/// Messages name the medium the way an operator wrote it in `ha.cf`
/// (`bcast eth9: no such interface`, `ucast eth0 nodeb: cannot resolve peer: ...`), so they
/// can be logged as they are.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// A medium could not be set up for a reason that is not a system call failure.
    #[error("{medium}: {reason}")]
    Medium { medium: String, reason: String },
    /// A system call failed while setting up a medium.
    #[error("{medium}: {what}: {error}")]
    MediumIo { medium: String, what: &'static str, error: io::Error },
    /// `SCHED_RR` could not be set or the priority is out of range.
    #[error("realtime scheduling: {0}")]
    Realtime(String),
    /// `mlockall(2)` failed.
    #[error("mlockall: {0}")]
    LockMemory(io::Error),
}

impl HostError {
    pub(crate) fn medium(medium: &str, reason: impl Into<String>) -> HostError {
        HostError::Medium { medium: medium.to_string(), reason: reason.into() }
    }

    pub(crate) fn io(medium: &str, what: &'static str, error: impl Into<io::Error>) -> HostError {
        HostError::MediumIo { medium: medium.to_string(), what, error: error.into() }
    }
}
