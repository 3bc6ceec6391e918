//! The filesystem capability's OS side: directory handles opened without following symlinks,
//! `fstatvfs`, files allocated unnamed (`O_TMPFILE`) and linked into place only after their
//! inverse is journalled, and undo by file identity, so a file that took the name of ours is
//! never removed.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use cap_std::fs::Dir;
use rustix::fs::{AtFlags, FallocateFlags, FileType, Mode, OFlags, ResolveFlags, StatxFlags};
use rustix::io::Errno;
use serde::{Deserialize, Serialize};

use crate::capability::{CapError, CapResult};

/// Chunk of the zero-writing fallback for file systems without `fallocate`.
const ZERO_CHUNK: usize = 1 << 20;

/// Longest the zero-writing fallback may take before the fill is abandoned (and undone).
const ZERO_DEADLINE: Duration = Duration::from_secs(60);

/// Space on one file system, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Space {
    /// Size of the file system.
    pub total: u64,
    /// Bytes free (root may use them all).
    pub free: u64,
    /// Bytes free for unprivileged users, what `df` shows as available.
    pub available: u64,
}

/// `fstatvfs` of an open directory.
pub fn space(dir: &Dir) -> io::Result<Space> {
    let s = rustix::fs::fstatvfs(dir)?;
    let unit = s.f_frsize.max(1);
    Ok(Space {
        total: s.f_blocks.saturating_mul(unit),
        free: s.f_bfree.saturating_mul(unit),
        available: s.f_bavail.saturating_mul(unit),
    })
}

/// Opens an absolute directory path without following a symlink anywhere on the way
/// (`openat2` with `RESOLVE_NO_SYMLINKS`); on kernels without `openat2`, opens it and checks
/// that it resolves to itself.
pub fn open_root(path: &Path) -> io::Result<Dir> {
    // RESOLVE_NO_SYMLINKS covers the last component too (ELOOP); O_NOFOLLOW would turn that
    // into a vaguer ENOTDIR.
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let resolve = ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
    for _ in 0..4 {
        match rustix::fs::openat2(rustix::fs::CWD, path, flags, Mode::empty(), resolve) {
            Ok(fd) => return Ok(Dir::from_std_file(File::from(fd))),
            // A rename somewhere on the host raced the lookup: try again.
            Err(Errno::AGAIN) => continue,
            Err(Errno::NOSYS) | Err(Errno::PERM) => break,
            Err(Errno::LOOP) => {
                return Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!("{} passes through a symlink", path.display()),
                ));
            }
            Err(e) => return Err(e.into()),
        }
    }
    if std::fs::canonicalize(path)? != path {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("{} passes through a symlink", path.display()),
        ));
    }
    let fd = rustix::fs::openat(
        rustix::fs::CWD,
        path,
        flags | OFlags::NOFOLLOW,
        Mode::empty(),
    )?;
    Ok(Dir::from_std_file(File::from(fd)))
}

/// Opens `relative` beneath `root` (cap-std: `..` and symlinks never lead out of it).
pub fn open_beneath(root: &Dir, relative: &Path) -> io::Result<Dir> {
    if relative.as_os_str().is_empty() {
        root.try_clone()
    } else {
        root.open_dir(relative)
    }
}

/// Which file (or directory) a journalled change made: device and inode, its owner, and its
/// birth time where the file system records one. A device number can change across a reboot
/// (loop devices, probe order), so with a birth time the device is not compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileIdentity {
    /// `st_dev`.
    pub dev: u64,
    /// `st_ino`.
    pub ino: u64,
    /// Owner.
    pub uid: u32,
    /// Birth time (seconds, nanoseconds), when known.
    pub born: Option<(i64, u32)>,
}

impl FileIdentity {
    /// Whether `other` is the same file.
    pub fn same(&self, other: &FileIdentity) -> bool {
        self.ino == other.ino
            && self.uid == other.uid
            && match (self.born, other.born) {
                (Some(a), Some(b)) => a == b,
                _ => self.dev == other.dev,
            }
    }
}

/// The identity and type of `name` in `dir` (the file itself, never a symlink's target), or of
/// the open file `dir` itself when `name` is empty.
fn identity_at(dir: impl AsFd, name: &str) -> io::Result<(FileIdentity, FileType)> {
    let flags = if name.is_empty() {
        AtFlags::EMPTY_PATH
    } else {
        AtFlags::SYMLINK_NOFOLLOW
    };
    let want = StatxFlags::TYPE | StatxFlags::INO | StatxFlags::UID | StatxFlags::BTIME;
    let st = rustix::fs::statx(dir, name, flags, want)?;
    let born = (st.stx_mask & StatxFlags::BTIME.bits() != 0)
        .then_some((st.stx_btime.tv_sec, st.stx_btime.tv_nsec));
    let identity = FileIdentity {
        dev: rustix::fs::makedev(st.stx_dev_major, st.stx_dev_minor),
        ino: st.stx_ino,
        uid: st.stx_uid,
        born,
    };
    Ok((
        identity,
        FileType::from_raw_mode(rustix::fs::RawMode::from(st.stx_mode)),
    ))
}

/// Bytes being filled right now per device, by this agent: two fills that start together each
/// see the other's space as taken, so together they cannot pass the reserve.
static IN_FLIGHT: Mutex<Option<HashMap<u64, u64>>> = Mutex::new(None);

/// A claim on space in the agent's in-flight ledger, released when dropped.
pub struct Claim {
    dev: u64,
    bytes: u64,
}

impl Claim {
    /// Claims `bytes` on the file system of `dir` unless that would leave less than `reserve`
    /// available; returns the space seen (less other claims) either way.
    pub fn take(dir: &Dir, bytes: u64, reserve: u64) -> io::Result<(Option<Claim>, Space)> {
        let (id, _) = identity_at(dir, "")?;
        let mut seen = space(dir)?;
        let mut guard = IN_FLIGHT.lock().unwrap_or_else(|p| p.into_inner());
        let claims = guard.get_or_insert_with(HashMap::new);
        let claimed = claims.get(&id.dev).copied().unwrap_or(0);
        seen.available = seen.available.saturating_sub(claimed);
        seen.free = seen.free.saturating_sub(claimed);
        if seen
            .available
            .checked_sub(bytes)
            .is_none_or(|left| left < reserve)
        {
            return Ok((None, seen));
        }
        *claims.entry(id.dev).or_insert(0) += bytes;
        Ok((Some(Claim { dev: id.dev, bytes }), seen))
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        let mut guard = IN_FLIGHT.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(claims) = guard.as_mut()
            && let Some(c) = claims.get_mut(&self.dev)
        {
            *c = c.saturating_sub(self.bytes);
            if *c == 0 {
                claims.remove(&self.dev);
            }
        }
    }
}

/// A file opened in a directory, not yet linked under its name.
pub struct Unlinked {
    file: File,
    /// Its identity.
    pub identity: FileIdentity,
    /// Whether it is an `O_TMPFILE` (no name until [`Unlinked::link`]); otherwise it was
    /// created under its name at once, on file systems without `O_TMPFILE`.
    anonymous: bool,
}

/// Opens a new file in `dir` that has no name yet (`O_TMPFILE`, mode 0600); where the file
/// system cannot, creates `name` exclusively instead (never following a symlink).
pub fn create_unlinked(dir: &Dir, name: &str) -> io::Result<Unlinked> {
    let mode = Mode::RUSR | Mode::WUSR;
    let rw = OFlags::RDWR | OFlags::CLOEXEC;
    let (fd, anonymous): (OwnedFd, bool) =
        match rustix::fs::openat(dir, ".", rw | OFlags::TMPFILE, mode) {
            Ok(fd) => (fd, true),
            Err(Errno::OPNOTSUPP) | Err(Errno::ISDIR) | Err(Errno::INVAL) => {
                let flags = rw | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW;
                (rustix::fs::openat(dir, name, flags, mode)?, false)
            }
            Err(e) => return Err(e.into()),
        };
    let (identity, _) = identity_at(&fd, "")?;
    Ok(Unlinked {
        file: File::from(fd),
        identity,
        anonymous,
    })
}

impl Unlinked {
    /// Allocates `bytes` for the file (`fallocate`, so the blocks are really taken; a file
    /// system without it gets zeros written in 1 MiB chunks, for at most a minute).
    pub fn allocate(&self, bytes: u64) -> io::Result<()> {
        if bytes == 0 {
            return Ok(());
        }
        match rustix::fs::fallocate(&self.file, FallocateFlags::empty(), 0, bytes) {
            Ok(()) => return Ok(()),
            Err(Errno::OPNOTSUPP) => {}
            Err(e) => return Err(e.into()),
        }
        let zeros = vec![0u8; ZERO_CHUNK];
        let deadline = Instant::now() + ZERO_DEADLINE;
        let mut at = 0u64;
        while at < bytes {
            if Instant::now() > deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "writing zeros (this file system has no fallocate) reached only {at} of {bytes} bytes in {}s",
                        ZERO_DEADLINE.as_secs()
                    ),
                ));
            }
            let n = usize::try_from((bytes - at).min(ZERO_CHUNK as u64)).unwrap_or(ZERO_CHUNK);
            self.file.write_all_at(&zeros[..n], at)?;
            at += n as u64;
        }
        self.file.sync_data()
    }

    /// Gives the file its name in `dir` (refusing to replace anything already there).
    pub fn link(&self, dir: &Dir, name: &str) -> io::Result<()> {
        if !self.anonymous {
            return Ok(());
        }
        match rustix::fs::linkat(&self.file, "", dir, name, AtFlags::EMPTY_PATH) {
            Ok(()) => Ok(()),
            // AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH; the /proc link works for anyone.
            Err(Errno::NOENT) | Err(Errno::PERM) => {
                let fd = std::os::fd::AsRawFd::as_raw_fd(&self.file);
                rustix::fs::linkat(
                    rustix::fs::CWD,
                    format!("/proc/self/fd/{fd}"),
                    dir,
                    name,
                    AtFlags::SYMLINK_FOLLOW,
                )
                .map_err(Into::into)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The open file, its name (on file systems without `O_TMPFILE`) removed: it lives as
    /// long as a descriptor to it does.
    pub fn forget_name(self, dir: &Dir, name: &str) -> io::Result<File> {
        if !self.anonymous {
            rustix::fs::unlinkat(dir, name, AtFlags::empty())?;
        }
        Ok(self.file)
    }
}

/// A file a fill created: where it is and which file it is. Undoing removes it, by its name
/// beneath the granted directory, only while the name still holds that very file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FillInverse {
    /// The granted directory (absolute, canonical).
    pub root: PathBuf,
    /// The file's directory relative to `root` (empty: `root` itself).
    pub directory: PathBuf,
    /// The file's name.
    pub name: String,
    /// The file.
    pub identity: FileIdentity,
    /// Its size, for messages.
    pub bytes: u64,
}

impl FillInverse {
    fn path(&self) -> PathBuf {
        self.root.join(&self.directory).join(&self.name)
    }

    /// The directory holding the file, or None when it (or the granted root) is gone.
    fn dir(&self) -> CapResult<Option<Dir>> {
        let opened = open_root(&self.root).and_then(|r| open_beneath(&r, &self.directory));
        match opened {
            Ok(d) => Ok(Some(d)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(CapError::Failed(format!(
                "cannot open {} to remove {}: {e}",
                self.root.join(&self.directory).display(),
                self.name
            ))),
        }
    }

    /// Whether the name still holds the file.
    fn ours(&self, dir: &Dir) -> CapResult<bool> {
        match identity_at(dir, &self.name) {
            Ok((id, kind)) => Ok(kind == FileType::RegularFile && id.same(&self.identity)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(CapError::Failed(format!(
                "cannot stat {}: {e}",
                self.path().display()
            ))),
        }
    }

    /// Removes the file if it is still there and still ours. Idempotent.
    pub fn undo(&self) -> CapResult<()> {
        let Some(dir) = self.dir()? else {
            return Ok(());
        };
        if !self.ours(&dir)? {
            if dir.symlink_metadata(&self.name).is_ok() {
                tracing::warn!(
                    "{} is not the file the fill created (another file took its name): left alone",
                    self.path().display()
                );
            }
            return Ok(());
        }
        match rustix::fs::unlinkat(&dir, self.name.as_str(), AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(CapError::Failed(format!(
                "failed to remove {}: {e}",
                self.path().display()
            ))),
        }
    }

    /// Whether the file is still there.
    pub fn is_present(&self) -> bool {
        // Unknown counts as present: recovery undoes rather than drops what it cannot check.
        match self.dir() {
            Ok(Some(dir)) => self.ours(&dir).unwrap_or(true),
            Ok(None) => false,
            Err(_) => true,
        }
    }

    /// What a person runs.
    pub fn manual_steps(&self) -> String {
        format!(
            "check that `stat -c %i {p}` prints {ino}, then: rm -f -- {p}",
            p = self.path().display(),
            ino = self.identity.ino
        )
    }
}

/// A fresh directory made for IO workers; undoing removes it (it holds only unnamed files).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MadeDirectory {
    /// The granted directory (absolute, canonical).
    pub root: PathBuf,
    /// The parent it was made in, relative to `root`.
    pub parent: PathBuf,
    /// Its name.
    pub name: String,
    /// The directory.
    pub identity: FileIdentity,
}

impl MadeDirectory {
    /// Makes `name` (mode 0700) in `parent` and opens it without following a symlink.
    pub fn make(
        root: &Path,
        relative: &Path,
        parent: &Dir,
        name: &str,
    ) -> io::Result<(MadeDirectory, Dir)> {
        rustix::fs::mkdirat(parent, name, Mode::RWXU)?;
        let fd = rustix::fs::openat(
            parent,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let (identity, _) = identity_at(&fd, "")?;
        Ok((
            MadeDirectory {
                root: root.to_path_buf(),
                parent: relative.to_path_buf(),
                name: name.to_string(),
                identity,
            },
            Dir::from_std_file(File::from(fd)),
        ))
    }

    fn path(&self) -> PathBuf {
        self.root.join(&self.parent).join(&self.name)
    }

    fn parent_dir(&self) -> CapResult<Option<Dir>> {
        match open_root(&self.root).and_then(|r| open_beneath(&r, &self.parent)) {
            Ok(d) => Ok(Some(d)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(CapError::Failed(format!(
                "cannot open {} to remove {}: {e}",
                self.root.join(&self.parent).display(),
                self.name
            ))),
        }
    }

    fn ours(&self, parent: &Dir) -> bool {
        identity_at(parent, &self.name)
            .is_ok_and(|(id, kind)| kind == FileType::Directory && id.same(&self.identity))
    }

    /// Removes the directory while it is still the one made (and empty). Idempotent.
    pub fn undo(&self) -> CapResult<()> {
        let Some(parent) = self.parent_dir()? else {
            return Ok(());
        };
        if !self.ours(&parent) {
            return Ok(());
        }
        match rustix::fs::unlinkat(&parent, self.name.as_str(), AtFlags::REMOVEDIR) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(Errno::NOTEMPTY) | Err(Errno::EXIST) => Err(CapError::Failed(format!(
                "{} is not empty: something other than the IO workers wrote there; nothing in it was removed",
                self.path().display()
            ))),
            Err(e) => Err(CapError::Failed(format!(
                "failed to remove {}: {e}",
                self.path().display()
            ))),
        }
    }

    /// Whether the directory is still there.
    pub fn is_present(&self) -> bool {
        match self.parent_dir() {
            Ok(Some(parent)) => self.ours(&parent),
            Ok(None) => false,
            Err(_) => true,
        }
    }

    /// What a person runs.
    pub fn manual_steps(&self) -> String {
        format!("rmdir -- {}", self.path().display())
    }
}
