//! Test support: scratch directories that are removed when the test ends, passed or failed, so
//! `cargo test` leaves nothing behind in the system temp dir. The integration tests include
//! this file too (`#[path = "../src/testing.rs"] mod testing;`): one definition for both.

/// A fresh empty directory under the system temp dir, named after `tag`, removed on drop: keep
/// the returned guard alive for as long as the test uses the directory.
pub(crate) fn scratch(tag: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("progc-{tag}-"))
        .tempdir()
        .expect("a scratch dir under the system temp dir")
}
