//! Failures of a backend, as errors with what to do: a panic inside burn or cubecl (out of
//! device memory, a driver fault) and a device that cannot be used.

pub(crate) use crate::exec::error::panic_message;
use crate::exec::error::{ErrorKind, ExecError};

/// The error for a panic caught while training.
pub(crate) fn panic_error(payload: &(dyn std::any::Any + Send)) -> ExecError {
    let msg = panic_message(payload);
    let lower = msg.to_lowercase();
    if ["out of memory", "oom", "memory allocation", "alloc"]
        .iter()
        .any(|k| lower.contains(k))
    {
        ExecError::new(ErrorKind::Resource, format!("out of memory: {msg}")).with_help(
            "use a smaller batch (`--set batch=...`) or model; checkpoints already written are \
             kept (continue with `progc run --resume DIR`)",
        )
    } else {
        ExecError::new(ErrorKind::Internal, format!("the backend failed: {msg}")).with_help(
            "this is a bug in progc or the device driver; checkpoints already written are kept \
             (continue with `progc run --resume DIR`)",
        )
    }
}

/// A device that cannot be used, with the way out.
pub(crate) fn device_error(msg: impl Into<String>) -> ExecError {
    ExecError::new(ErrorKind::Device, msg).with_help("use --device cpu")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panics_become_errors_with_help() {
        let oom = panic_error(&String::from("CUDA_ERROR_OUT_OF_MEMORY: out of memory"));
        assert_eq!(oom.kind, ErrorKind::Resource);
        assert!(
            oom.help
                .as_deref()
                .is_some_and(|h| h.contains("smaller batch"))
        );
        let other = panic_error(&"index out of bounds");
        assert_eq!(other.kind, ErrorKind::Internal);
        assert_eq!(panic_message(&7u8), "unknown failure");
    }
}
