//! One daemon per database and per socket.
//!
//! The database is guarded by an exclusive `flock` on `<db>.lock` holding
//! the owner's pid; the kernel drops the lock when the process dies, even by
//! `kill -9`, so a crash never leaves a daemon locked out. The socket path
//! is checked by connecting: an answer means a live daemon (named by its
//! pid, read from the peer's credentials); a refusal means a socket left
//! behind by a killed daemon, which is removed and replaced.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Why the daemon cannot take its database or socket.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InstanceError {
    #[error("another hephd{} is already running on the database {}", pid_text(*.pid), .db.display())]
    DbInUse { pid: Option<u32>, db: PathBuf },
    #[error("another hephd{} is already listening on the socket {}", pid_text(*.pid), .socket.display())]
    SocketInUse { pid: Option<u32>, socket: PathBuf },
    #[error("{} exists and is not a socket; remove it or choose another --socket", .0.display())]
    NotASocket(PathBuf),
    #[error("cannot {what} {}: {source}", .path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn pid_text(pid: Option<u32>) -> String {
    pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> InstanceError + 'a {
    move |source| InstanceError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// Creates `dir` and its missing parents with mode 0700 (existing ones are left alone).
pub fn create_private_dir(dir: &Path) -> Result<(), InstanceError> {
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_err("create the directory", dir))
}

/// The held lock on a database; released when dropped or when the process dies.
#[derive(Debug)]
pub struct DbLock {
    _file: File,
}

/// The lock file guarding `db`.
pub fn lock_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// Takes the database lock, or names the daemon holding it.
pub fn lock_db(db: &Path) -> Result<DbLock, InstanceError> {
    let path = lock_path(db);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(io_err("open the lock file", &path))?;
    // SAFETY: flock on a file descriptor we own; no memory is shared.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            return Err(InstanceError::DbInUse {
                pid: text.trim().parse().ok(),
                db: db.to_path_buf(),
            });
        }
        return Err(io_err("lock", &path)(err));
    }
    file.set_len(0)
        .map_err(io_err("write the lock file", &path))?;
    file.rewind()
        .map_err(io_err("write the lock file", &path))?;
    write!(file, "{}", std::process::id()).map_err(io_err("write the lock file", &path))?;
    Ok(DbLock { _file: file })
}

/// The pid of the process at the other end of a unix socket.
fn peer_pid(stream: &std::os::unix::net::UnixStream) -> Option<u32> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` and `len` are valid for writes of the sizes passed.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&raw mut cred).cast(),
            &mut len,
        )
    };
    (rc == 0 && cred.pid > 0).then_some(cred.pid as u32)
}

/// Makes `socket` free to bind: refuses a live daemon's socket, removes a stale one.
/// Returns whether a stale socket was removed.
pub fn clear_socket(socket: &Path) -> Result<bool, InstanceError> {
    let meta = match std::fs::symlink_metadata(socket) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io_err("inspect the socket", socket)(e)),
    };
    if !meta.file_type().is_socket() {
        return Err(InstanceError::NotASocket(socket.to_path_buf()));
    }
    match std::os::unix::net::UnixStream::connect(socket) {
        Ok(stream) => Err(InstanceError::SocketInUse {
            pid: peer_pid(&stream),
            socket: socket.to_path_buf(),
        }),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            std::fs::remove_file(socket).map_err(io_err("remove the stale socket", socket))?;
            Ok(true)
        }
        Err(e) => Err(io_err("check the socket", socket)(e)),
    }
}

/// Restricts the socket to its owner (mode 0600).
pub fn restrict_socket(socket: &Path) -> Result<(), InstanceError> {
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))
        .map_err(io_err("set the permissions of", socket))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("heph.db");
        let held = lock_db(&db).unwrap();
        let err = lock_db(&db).unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with(&format!(
                "another hephd (pid {}) is already running on the database",
                std::process::id()
            )),
            "{text}"
        );
        drop(held);
        lock_db(&db).unwrap();
    }

    #[test]
    fn stale_and_live_sockets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        assert!(!clear_socket(&path).unwrap());
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let err = clear_socket(&path).unwrap_err();
        assert!(
            matches!(err, InstanceError::SocketInUse { pid: Some(p), .. } if p == std::process::id())
        );
        drop(listener); // the file stays behind, like after kill -9
        assert!(path.exists());
        assert!(clear_socket(&path).unwrap());
        assert!(!path.exists());
        std::fs::write(&path, b"x").unwrap();
        assert!(matches!(
            clear_socket(&path),
            Err(InstanceError::NotASocket(_))
        ));
    }
}
