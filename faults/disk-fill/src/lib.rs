//! `disk-fill`: fills the file system holding a granted directory, by a size, up to a used
//! percentage, or until only so much space is left, at once or over time (a ticking fault that
//! adds one chunk per tick); revert removes what it wrote.

use std::time::Duration;

use faultline_sdk::{
    Capability, Error, Fault, HumanDuration, InjectContext, TickContext, Ticking, filesystem, log,
    rollback,
};
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
    /// Reach the target gradually over this long (`"60s"`, `"5m"`), in up to 100 chunks;
    /// omitted (and no `rate`): at once.
    #[serde(default)]
    duration_to_fill: Option<HumanDuration>,
    /// Or grow at this many bytes per second (`"10MiB"`), in up to 100 chunks.
    #[serde(default)]
    rate: Option<String>,
}

/// Most chunks an over-time fill is cut into (each is one file and one host change).
const MAX_CHUNKS: u64 = 100;

/// Shortest time between two chunks.
const MIN_INTERVAL: Duration = Duration::from_millis(100);

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
    /// How long the whole fill should take, when it is gradual.
    fn spread(&self, bytes: u64) -> Result<Option<Duration>, Error> {
        match (&self.duration_to_fill, &self.rate) {
            (None, None) => Ok(None),
            (Some(d), None) if d.get().is_zero() => {
                Err(Error::invalid("`duration_to_fill` must be longer than 0s"))
            }
            (Some(d), None) => Ok(Some(d.get())),
            (None, Some(r)) => {
                let per_second = size("rate", r.trim().trim_end_matches("/s"))?;
                if per_second == 0 {
                    return Err(Error::invalid("`rate` must be at least 1 byte per second"));
                }
                Ok(Some(Duration::from_secs_f64(
                    bytes as f64 / per_second as f64,
                )))
            }
            (Some(_), Some(_)) => Err(Error::invalid(
                "give `duration_to_fill` or `rate`, not both",
            )),
        }
    }

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

/// What the ticks and revert need: the host's changes (one file each) and, for a gradual
/// fill, what is left to do.
#[derive(Serialize, Deserialize)]
struct State {
    changes: Vec<u64>,
    /// A gradual fill still under way.
    #[serde(default)]
    gradual: Option<Gradual>,
}

/// A fill spread over time.
#[derive(Serialize, Deserialize)]
struct Gradual {
    directory: String,
    /// The target, as given.
    size: Option<u64>,
    percent: Option<u8>,
    space_left: Option<u64>,
    /// Bytes written so far (for the `size` target).
    filled: u64,
    /// Bytes per chunk.
    chunk: u64,
    /// Time between chunks, in milliseconds.
    interval_ms: u64,
}

impl Gradual {
    fn target(&self) -> Target {
        match (self.size, self.percent, self.space_left) {
            (Some(n), _, _) => Target::Size(n.saturating_sub(self.filled)),
            (_, Some(p), _) => Target::Percent(p),
            (_, _, left) => Target::SpaceLeft(left.unwrap_or(0)),
        }
    }
}

struct DiskFill;

impl Fault for DiskFill {
    type Params = Params;
    type State = State;

    const SUMMARY: &'static str = "Fills a file system in a granted directory by a size, to a used percentage or to the space left";
    // `filesystem` is declared by importing it (the 0.1 capability list cannot name it).
    const CAPABILITIES: &'static [Capability] = &[Capability::Log, Capability::Rollback];

    fn validate(params: &Params) -> Result<(), Error> {
        filesystem::check_directory(&params.directory)?;
        params.target()?;
        params.spread(1).map(|_| ())
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
                gradual: None,
            });
        }
        if let Some(spread) = params.spread(bytes)? {
            // Chunks at least MIN_INTERVAL apart, at most MAX_CHUNKS of them; the ticks write.
            let chunks = (spread.as_millis() / MIN_INTERVAL.as_millis())
                .clamp(1, u128::from(MAX_CHUNKS)) as u64;
            let interval_ms =
                u64::try_from(spread.as_millis() / u128::from(chunks)).unwrap_or(u64::MAX);
            log::info(format!(
                "filling {bytes} bytes in {} over {spread:?}: {chunks} chunk(s) every {interval_ms} ms",
                params.directory
            ));
            return Ok(State {
                changes: Vec::new(),
                gradual: Some(Gradual {
                    directory: params.directory.clone(),
                    size: match target {
                        Target::Size(n) => Some(n),
                        _ => None,
                    },
                    percent: match target {
                        Target::Percent(p) => Some(p),
                        _ => None,
                    },
                    space_left: match target {
                        Target::SpaceLeft(l) => Some(l),
                        _ => None,
                    },
                    filled: 0,
                    // Whole pages, so only the last chunk's file ends in a partial block.
                    chunk: bytes.div_ceil(chunks).next_multiple_of(4096),
                    interval_ms,
                }),
            });
        }
        let change = filesystem::fill(&params.directory, bytes)?;
        log::info(format!(
            "filled {bytes} bytes in {} ({} of {} bytes were available)",
            params.directory, space.available_bytes, space.total_bytes
        ));
        Ok(State {
            changes: vec![change],
            gradual: None,
        })
    }

    fn revert(state: State) -> Result<(), Error> {
        rollback::undo_all(&state.changes)
    }
}

impl Ticking for DiskFill {
    /// Adds one chunk (never past the target, measured again each time); done when the target
    /// is reached.
    fn tick(state: &mut State, _: &TickContext) -> Result<Option<Duration>, Error> {
        let Some(g) = state.gradual.as_mut() else {
            return Ok(None);
        };
        let space = filesystem::space(&g.directory)?;
        let bytes = bytes_to_fill(&g.target(), &space).min(g.chunk);
        if bytes > 0 {
            state.changes.push(filesystem::fill(&g.directory, bytes)?);
            g.filled += bytes;
        }
        let left = bytes_to_fill(&g.target(), &filesystem::space(&g.directory)?);
        if left == 0 {
            log::info(format!(
                "filled {} bytes in {}: target reached",
                g.filled, g.directory
            ));
            state.gradual = None;
            return Ok(None);
        }
        Ok(Some(Duration::from_millis(g.interval_ms)))
    }
}

faultline_sdk::export_ticking_fault!(DiskFill);
