//! The front end's tests read the repository's files (`std/`, `examples/`, `tests/fixtures/`)
//! by the relative paths that also appear in their snapshots, so they run from the repository
//! root, one level above this crate.

use std::sync::Once;

/// Makes the repository root the working directory (once per test binary; every test calls it
/// before it touches a file).
pub fn enter() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
        std::env::set_current_dir(root).expect("the repository root exists");
    });
}
