//! `io-stress`: loads a file system with the agent's own IO workers, each writing (and
//! fsyncing) and/or reading back a file of its own in a granted directory, optionally inside
//! the service's cgroup; revert kills them and removes their files.

use faultline_sdk::{Capability, Error, Fault, InjectContext, cgroup, filesystem, log, rollback};
use schemars::JsonSchema;
use serde::Deserialize;

/// What the workers do.
#[derive(Deserialize, JsonSchema, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "lowercase")]
enum Mode {
    /// Read the file back, its cached pages dropped first (written once at the start).
    Read,
    /// Write and fsync the file.
    Write,
    /// Both, in turn.
    Readwrite,
}

/// Parameters of `io-stress`.
#[derive(Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
struct Params {
    /// Where the workers' files go: a granted directory or one beneath it (absolute path).
    directory: String,
    /// Worker processes (1 to 64).
    #[serde(default = "one")]
    workers: u32,
    /// Size of each worker's file, e.g. `64MiB` (at most 1 GiB).
    #[serde(default = "file_size")]
    file_size: String,
    /// `read`, `write` or `readwrite`.
    #[serde(default = "readwrite")]
    mode: Mode,
    /// Cgroup to place the workers in (a path such as `/system.slice/app.service`), so they
    /// compete with the service for its IO; give this or `pid`, or neither for the agent's own.
    #[serde(default)]
    cgroup: Option<String>,
    /// Place the workers in this process's cgroup instead.
    #[serde(default)]
    pid: Option<u32>,
}

fn one() -> u32 {
    1
}

fn file_size() -> String {
    "64MiB".to_string()
}

fn readwrite() -> Mode {
    Mode::Readwrite
}

/// Largest file one worker may have (the host's limit).
const MAX_FILE: u64 = 1 << 30;

impl Params {
    fn file_bytes(&self) -> Result<u64, Error> {
        let bytes = self
            .file_size
            .trim()
            .parse::<bytesize::ByteSize>()
            .map(|b| b.as_u64())
            .map_err(|_| {
                Error::invalid(format!(
                    "`file_size` {:?} is not a size (`64MiB`, `1GiB`, or bytes)",
                    self.file_size
                ))
            })?;
        if bytes == 0 || bytes > MAX_FILE {
            return Err(Error::invalid(format!(
                "`file_size` must be 1 byte to 1GiB, not {:?}",
                self.file_size
            )));
        }
        Ok(bytes)
    }

    fn cgroup(&self) -> Result<Option<filesystem::WorkersCgroup>, Error> {
        match (&self.cgroup, self.pid) {
            (None, None) => Ok(None),
            (Some(path), None) => {
                cgroup::check_path(path)?;
                Ok(Some(filesystem::WorkersCgroup::Path(path.clone())))
            }
            (None, Some(pid)) => Ok(Some(filesystem::WorkersCgroup::Pid(pid))),
            (Some(_), Some(_)) => Err(Error::invalid("give `cgroup` or `pid`, not both")),
        }
    }
}

struct IoStress;

impl Fault for IoStress {
    type Params = Params;
    /// The host's changes, undone on revert.
    type State = Vec<u64>;

    const SUMMARY: &'static str =
        "Loads a file system with IO workers writing and reading files, optionally inside a cgroup";
    // `filesystem` is declared by importing it (the 0.1 capability list cannot name it).
    const CAPABILITIES: &'static [Capability] = &[Capability::Log, Capability::Rollback];

    fn validate(params: &Params) -> Result<(), Error> {
        filesystem::check_directory(&params.directory)?;
        faultline_sdk::process::check_workers(params.workers)?;
        params.file_bytes()?;
        params.cgroup().map(|_| ())
    }

    fn inject(params: Params, _: &InjectContext) -> Result<Vec<u64>, Error> {
        let spec = filesystem::IoStressSpec {
            directory: params.directory.clone(),
            workers: params.workers,
            file_bytes: params.file_bytes()?,
            write: params.mode != Mode::Read,
            read: params.mode != Mode::Write,
            cgroup: params.cgroup()?,
        };
        let change = filesystem::start_io_stress(&spec)?;
        log::info(format!(
            "{} IO worker(s) ({:?}) on {} each in {}",
            params.workers, params.mode, params.file_size, params.directory
        ));
        Ok(vec![change])
    }

    fn revert(changes: Vec<u64>) -> Result<(), Error> {
        rollback::undo_all(&changes)
    }
}

faultline_sdk::export_fault!(IoStress);
