//! Executor errors: every user-facing failure says what happened and what to do about it.

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// A file could not be read or written.
    Io,
    /// The corpus is missing, unreadable or too small.
    Data,
    /// The requested device cannot be used.
    Device,
    /// A checkpoint is corrupt or does not belong to this run.
    Checkpoint,
    /// Training diverged (NaN or inf loss).
    Diverged,
    /// A peer of a data-parallel run failed, disagreed or stopped answering.
    Parallel,
    /// Out of memory, or another resource limit.
    Resource,
    /// Another process is writing the run directory.
    Busy,
    /// A mistake in the command line: a bad flag value, an unknown name (exit code 2).
    Usage,
    /// A bug in progc.
    Internal,
}

#[derive(Clone, Debug)]
pub struct ExecError {
    pub kind: ErrorKind,
    pub message: String,
    /// What the user can do about it.
    pub help: Option<String>,
}

impl ExecError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ExecError {
            kind,
            message: message.into(),
            help: None,
        }
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// An IO error on `path`, with the OS reason.
    pub fn io(action: &str, path: &std::path::Path, err: std::io::Error) -> Self {
        ExecError::new(
            ErrorKind::Io,
            format!("cannot {action} {}: {err}", path.display()),
        )
    }
}

impl fmt::Display for ExecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.message)?;
        if let Some(help) = &self.help {
            write!(f, "\n  help: {help}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ExecError {}

/// The text of a caught panic (a backend's failure, or a kernel's self-check).
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown failure".into())
}
