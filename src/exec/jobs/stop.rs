//! Stop signals. While a run trains, SIGINT (Ctrl-C) and SIGTERM (what a cluster scheduler
//! sends before it preempts a job) ask the training loop to finish the step in flight, write a
//! checkpoint for it and flush the metrics; the command then says how to resume and exits with
//! 128 + the signal (130 or 143). A second SIGINT or SIGTERM exits at once, without a
//! checkpoint.
//!
//! Invariants:
//! - nothing happens on a signal until [`install`] has run (`progc run` does);
//! - the handlers only store the signal number (async-signal-safe, `signal-hook`); the loop
//!   polls [`requested`] once per step. On one device it stops after that step. Data-parallel
//!   peers (threads of one process, or processes on several nodes, each of which may get the
//!   signal) add their flags into the loss all-reduce of each logged step and stop after the
//!   first logged step at which any of them was signalled: all of them after the same step,
//!   which the leader checkpoints.

use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::flag;

/// The signal received (0: none).
fn received() -> &'static Arc<AtomicUsize> {
    static RECEIVED: OnceLock<Arc<AtomicUsize>> = OnceLock::new();
    RECEIVED.get_or_init(|| Arc::new(AtomicUsize::new(0)))
}

/// Installs the handlers (once; later calls do nothing). An error to install them leaves the
/// default behaviour, and is reported as a warning.
pub fn install() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let armed = Arc::new(AtomicBool::new(false));
        for sig in [SIGINT, SIGTERM] {
            // Registered first, so it runs first: on a second signal `armed` is already set.
            let result = flag::register_conditional_shutdown(sig, 128 + sig, Arc::clone(&armed))
                .and_then(|_| flag::register(sig, Arc::clone(&armed)))
                .and_then(|_| flag::register_usize(sig, Arc::clone(received()), sig as usize));
            if let Err(e) = result {
                eprintln!("warning: cannot handle signal {sig} ({e}): it will stop progc at once");
            }
        }
    });
}

/// The stop signal received so far, if any.
pub fn requested() -> Option<Signal> {
    match received().load(Ordering::Relaxed) {
        0 => None,
        s => Some(Signal(s as i32)),
    }
}

/// A stop signal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Signal(pub i32);

impl Signal {
    /// The shell's exit status for a process stopped by this signal.
    pub fn exit_code(self) -> i32 {
        128 + self.0
    }

    pub fn name(self) -> &'static str {
        match self.0 {
            SIGINT => "SIGINT",
            SIGTERM => "SIGTERM",
            _ => "a signal",
        }
    }
}
