//! `disk-fill`: fills the file system holding a granted directory, by a size, up to a used
//! percentage, or until only so much space is left; revert removes what it wrote.

use faultline_sdk::{Capability, Error, Fault, InjectContext, filesystem, log, rollback};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Parameters of `disk-fill`: `directory` and exactly one of `size`, `percent`, `space_left`.
#[derive(Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
struct Params {
    /// Where the fill file goes: a granted directory or one beneath it (absolute path).
    directory: String,
    /// Bytes to write, e.g. `500MiB`, `2GB` or a number of bytes.
    #[serde(default)]
    size: Option<String>,
    /// Fill until the file system is this full, 1 to 100, in percent of its capacity as `df`
    /// counts it (used / (used + available)).
    #[serde(default)]
    percent: Option<u8>,
    /// Fill until only this much is available, e.g. `1GiB`.
    #[serde(default)]
    space_left: Option<String>,
}

/// How much to fill.
enum Target {
    Size(u64),
    Percent(u8),
    SpaceLeft(u64),
}

fn size(name: &str, text: &str) -> Result<u64, Error> {
    text.trim()
        .parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|_| {
            Error::invalid(format!(
                "`{name}` {text:?} is not a size (`500MiB`, `1GiB`, or bytes)"
            ))
        })
}

impl Params {
    fn target(&self) -> Result<Target, Error> {
        match (&self.size, self.percent, &self.space_left) {
            (Some(s), None, None) => match size("size", s)? {
                0 => Err(Error::invalid("`size` must be at least 1 byte")),
                n => Ok(Target::Size(n)),
            },
            (None, Some(p), None) if (1..=100).contains(&p) => Ok(Target::Percent(p)),
            (None, Some(p), None) => Err(Error::invalid(format!(
                "`percent` must be 1 to 100, not {p}"
            ))),
            (None, None, Some(s)) => Ok(Target::SpaceLeft(size("space_left", s)?)),
            _ => Err(Error::invalid(
                "give exactly one of `size`, `percent` or `space_left`",
            )),
        }
    }
}

/// Bytes to write to reach `target` on a file system in state `space`; 0 when it is already
/// there.
fn bytes_to_fill(target: &Target, space: &filesystem::DiskSpace) -> u64 {
    match *target {
        Target::Size(n) => n,
        Target::Percent(p) => {
            // As df: capacity is what is used plus what is available (root's reserve excluded).
            let used = space.total_bytes.saturating_sub(space.free_bytes);
            let capacity = used.saturating_add(space.available_bytes);
            let wanted = (u128::from(capacity) * u128::from(p)).div_ceil(100);
            u64::try_from(wanted)
                .unwrap_or(u64::MAX)
                .saturating_sub(used)
        }
        Target::SpaceLeft(left) => space.available_bytes.saturating_sub(left),
    }
}

/// What revert needs: the host's changes (one file each).
#[derive(Serialize, Deserialize)]
struct State {
    changes: Vec<u64>,
}

struct DiskFill;

impl Fault for DiskFill {
    type Params = Params;
    type State = State;

    const SUMMARY: &'static str =
        "Fills a file system in a granted directory by a size, to a used percentage or to the space left";
    // `filesystem` is declared by importing it (the 0.1 capability list cannot name it).
    const CAPABILITIES: &'static [Capability] = &[Capability::Log, Capability::Rollback];

    fn validate(params: &Params) -> Result<(), Error> {
        filesystem::check_directory(&params.directory)?;
        params.target().map(|_| ())
    }

    fn inject(params: Params, _: &InjectContext) -> Result<State, Error> {
        let target = params.target()?;
        let space = filesystem::space(&params.directory)?;
        let bytes = bytes_to_fill(&target, &space);
        if bytes == 0 {
            log::info(format!(
                "{} already has {} bytes available of {}: nothing to fill",
                params.directory, space.available_bytes, space.total_bytes
            ));
            return Ok(State {
                changes: Vec::new(),
            });
        }
        let change = filesystem::fill(&params.directory, bytes)?;
        log::info(format!(
            "filled {bytes} bytes in {} ({} of {} bytes were available)",
            params.directory, space.available_bytes, space.total_bytes
        ));
        Ok(State {
            changes: vec![change],
        })
    }

    fn revert(state: State) -> Result<(), Error> {
        rollback::undo_all(&state.changes)
    }
}

faultline_sdk::export_fault!(DiskFill);
