//! One writer per run directory.
//!
//! A writer (`progc run`, `run --resume`, `run --experiment`) holds an exclusive advisory lock
//! on `DIR/writer.lock` (`File::try_lock`) from before its first write to the directory until
//! it exits. The file also says who holds it (pid, host, start time), so a second writer's
//! error can name them.
//!
//! Invariants:
//! - the lock belongs to the open file, so the OS releases it when the process ends in any
//!   way, `kill -9` included: a lock file left behind never blocks anyone;
//! - a writer that cannot take the lock has written nothing to the directory (the lock file
//!   is opened without truncation, and its text is only rewritten by the holder);
//! - readers (`report`, `export`, `sample`) never take the lock: [`holder`] only tells them
//!   whether someone is writing.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::exec::error::{ErrorKind, ExecError};

/// The lock file's name inside a run or experiment directory.
pub const LOCK_FILE: &str = "writer.lock";

/// Who holds a directory's lock.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Holder {
    pub pid: u32,
    pub host: String,
    /// RFC 3339, UTC, seconds.
    pub started: String,
}

impl Holder {
    fn me() -> Holder {
        Holder {
            pid: std::process::id(),
            host: gethostname::gethostname().to_string_lossy().into_owned(),
            started: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        }
    }
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "process {} on {}, started {}",
            self.pid, self.host, self.started
        )
    }
}

/// The exclusive lock of one directory, released when dropped or when the process ends.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
    pub path: PathBuf,
}

/// Takes `dir`'s writer lock (creating `dir` if needed), or says who holds it.
pub fn lock_dir(dir: &Path) -> Result<DirLock, ExecError> {
    std::fs::create_dir_all(dir).map_err(|e| ExecError::io("create directory", dir, e))?;
    let path = dir.join(LOCK_FILE);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| ExecError::io("open", &path, e))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let who =
                read_holder(&mut file).map_or("another process".to_string(), |h| h.to_string());
            return Err(ExecError::new(
                ErrorKind::Busy,
                format!("{} is being written by {who}", dir.display()),
            )
            .with_help(format!(
                "wait for that run to finish (or stop it: Ctrl-C saves its step), then \
                 `progc run --resume {0}`; to train alongside it, give this run its own --out \
                 directory. Reading it is fine: `progc report` / `export` / `sample` work while \
                 it trains",
                dir.display()
            )));
        }
        Err(TryLockError::Error(e)) => return Err(ExecError::io("lock", &path, e)),
    }
    let text = serde_json::to_string(&Holder::me()).unwrap_or_default();
    let written = file
        .set_len(0)
        .and_then(|_| file.seek(SeekFrom::Start(0)))
        .and_then(|_| file.write_all(format!("{text}\n").as_bytes()))
        .and_then(|_| file.flush());
    written.map_err(|e| ExecError::io("write", &path, e))?;
    Ok(DirLock { _file: file, path })
}

fn read_holder(file: &mut File) -> Option<Holder> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.read_to_string(&mut text).ok()?;
    serde_json::from_str(text.trim()).ok()
}

/// Who is writing `dir` right now (`None`: nobody, or no lock file).
pub fn holder(dir: &Path) -> Option<Holder> {
    let path = dir.join(LOCK_FILE);
    let mut file = OpenOptions::new().read(true).write(true).open(path).ok()?;
    match file.try_lock_shared() {
        Ok(()) => None,
        Err(TryLockError::WouldBlock) => Some(read_holder(&mut file).unwrap_or(Holder {
            pid: 0,
            host: "?".into(),
            started: "?".into(),
        })),
        Err(TryLockError::Error(_)) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::scratch;

    #[test]
    fn a_second_writer_is_refused_and_told_who_holds_the_directory() {
        let tmp = scratch("lock");
        let dir = tmp.path();
        let first = lock_dir(dir).expect("free");
        let e = lock_dir(dir).expect_err("held");
        assert_eq!(e.kind, ErrorKind::Busy);
        let pid = std::process::id().to_string();
        assert!(
            e.message.contains(&format!("process {pid} on ")) && e.message.contains("started 20"),
            "{e}"
        );
        assert!(e.help.as_deref().unwrap_or("").contains("--resume"), "{e}");
        assert_eq!(holder(dir).map(|h| h.pid), Some(std::process::id()));
        drop(first);
        assert_eq!(holder(dir), None);
        let again = lock_dir(dir).expect("released with its holder");
        drop(again);
    }
}
