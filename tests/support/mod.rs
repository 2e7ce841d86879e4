//! Shared by the integration tests (each declares `mod support;`).

/// A fresh empty directory under the system temp dir, named after `tag`, removed on drop, passed
/// or failed: keep the returned guard alive for as long as the test uses the directory.
pub fn scratch(tag: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("progc-{tag}-"))
        .tempdir()
        .expect("a scratch dir under the system temp dir")
}
