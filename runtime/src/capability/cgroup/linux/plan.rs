//! Which files each setting changes, on v1 and v2, and what to write to apply and to restore.
//!
//! The table of files is in the parent module's documentation.

use std::io;

use cap_std::fs::Dir;

use super::{FileChange, Setting, io_error};
use crate::capability::{CapError, CapResult};

/// Smallest CFS quota the kernel accepts, in microseconds.
const MIN_QUOTA_US: u64 = 1_000;

/// Largest CFS period the kernel accepts, in microseconds.
const MAX_PERIOD_US: u64 = 1_000_000;

/// Refuses settings no kernel would take or that mean nothing.
pub(super) fn validate(setting: &Setting) -> CapResult<()> {
    match setting {
        Setting::CpuLimit { millicores: 0 } => Err(CapError::Invalid(
            "a cpu limit must be at least 1 millicore".to_string(),
        )),
        Setting::MemoryLimit { bytes: 0 } => Err(CapError::Invalid(
            "a memory limit must be at least 1 byte".to_string(),
        )),
        Setting::IoLimit {
            device,
            read_bps,
            write_bps,
        } => {
            let valid = device
                .split_once(':')
                .is_some_and(|(maj, min)| maj.parse::<u32>().is_ok() && min.parse::<u32>().is_ok());
            if !valid {
                return Err(CapError::Invalid(format!(
                    "block device {device:?} is not major:minor"
                )));
            }
            if *read_bps == 0 && *write_bps == 0 {
                return Err(CapError::Invalid(
                    "an io limit needs a read or a write rate (0 means unlimited)".to_string(),
                ));
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// The files `setting` changes in cgroup `dir`, with their current contents.
pub(super) fn plan(
    dir: &Dir,
    path: &str,
    setting: &Setting,
    version: u8,
) -> CapResult<Vec<FileChange>> {
    let read = |file: &str| {
        dir.read_to_string(file).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                CapError::Unsupported(format!("cgroup {path} has no {file}"))
            } else {
                io_error(e, &format!("failed to read {file} of cgroup {path}"))
            }
        })
    };
    let same = |file: &str, previous: String, apply: String| FileChange {
        file: file.to_string(),
        restore: previous.trim_end().to_string(),
        previous,
        apply,
    };
    let changes = match (setting, version) {
        (Setting::CpuLimit { millicores }, 1) => {
            let period_now = read("cpu.cfs_period_us")?;
            let quota_now = read("cpu.cfs_quota_us")?;
            let (quota, period) =
                cpu_quota(*millicores, parse_u64(&period_now, "cpu.cfs_period_us")?);
            // Period first: the quota is checked against it.
            vec![
                same("cpu.cfs_period_us", period_now, period.to_string()),
                same("cpu.cfs_quota_us", quota_now, quota.to_string()),
            ]
        }
        (Setting::CpuLimit { millicores }, _) => {
            let now = read("cpu.max")?;
            let period = now.split_whitespace().nth(1).unwrap_or("100000");
            let (quota, period) = cpu_quota(*millicores, parse_u64(period, "cpu.max")?);
            vec![same("cpu.max", now, format!("{quota} {period}"))]
        }
        (Setting::MemoryLimit { bytes }, 1) => {
            vec![same(
                "memory.limit_in_bytes",
                read("memory.limit_in_bytes")?,
                bytes.to_string(),
            )]
        }
        (Setting::MemoryLimit { bytes }, _) => {
            vec![same("memory.max", read("memory.max")?, bytes.to_string())]
        }
        (Setting::PidsLimit { max }, _) => {
            vec![same("pids.max", read("pids.max")?, max.to_string())]
        }
        (
            Setting::IoLimit {
                device,
                read_bps,
                write_bps,
            },
            1,
        ) => {
            // One rule per device and direction; writing rate 0 removes the rule.
            let rule = |file: &str, bps: u64| -> CapResult<FileChange> {
                let previous = read(file)?;
                let restore =
                    device_line(&previous, device).unwrap_or_else(|| format!("{device} 0"));
                Ok(FileChange {
                    file: file.to_string(),
                    apply: format!("{device} {bps}"),
                    restore,
                    previous,
                })
            };
            vec![
                rule("blkio.throttle.read_bps_device", *read_bps)?,
                rule("blkio.throttle.write_bps_device", *write_bps)?,
            ]
        }
        (
            Setting::IoLimit {
                device,
                read_bps,
                write_bps,
            },
            _,
        ) => {
            let previous = read("io.max")?;
            let restore = device_line(&previous, device)
                .unwrap_or_else(|| format!("{device} rbps=max wbps=max riops=max wiops=max"));
            let rate = |bps: u64| {
                if bps == 0 {
                    "max".to_string()
                } else {
                    bps.to_string()
                }
            };
            vec![FileChange {
                file: "io.max".to_string(),
                apply: format!(
                    "{device} rbps={} wbps={}",
                    rate(*read_bps),
                    rate(*write_bps)
                ),
                restore,
                previous,
            }]
        }
        (Setting::Freeze, 1) => {
            let previous = read("freezer.state")?;
            // freezer.state also reads FROZEN when only an ancestor is frozen: what this cgroup
            // itself asked for is in freezer.self_freezing.
            let own = read("freezer.self_freezing")?;
            let restore = if own.trim() == "1" {
                "FROZEN"
            } else {
                "THAWED"
            };
            vec![FileChange {
                file: "freezer.state".to_string(),
                previous,
                apply: "FROZEN".to_string(),
                restore: restore.to_string(),
            }]
        }
        (Setting::Freeze, _) => vec![same(
            "cgroup.freeze",
            read("cgroup.freeze")?,
            "1".to_string(),
        )],
    };
    Ok(changes)
}

/// CFS quota and period for `millicores`, keeping `period` unless the quota would fall below the
/// kernel's 1 ms minimum, in which case the period grows to its 1 s maximum.
fn cpu_quota(millicores: u32, period: u64) -> (u64, u64) {
    let quota = u64::from(millicores).saturating_mul(period) / 1000;
    if quota >= MIN_QUOTA_US {
        (quota, period)
    } else {
        let quota = u64::from(millicores).saturating_mul(MAX_PERIOD_US) / 1000;
        (quota.max(MIN_QUOTA_US), MAX_PERIOD_US)
    }
}

fn parse_u64(text: &str, file: &str) -> CapResult<u64> {
    text.trim()
        .parse()
        .map_err(|_| CapError::Failed(format!("unexpected contents of {file}: {text:?}")))
}

/// The line for `device` in a per-device cgroup file (`io.max`, `blkio.throttle.*`).
fn device_line(contents: &str, device: &str) -> Option<String> {
    contents
        .lines()
        .find(|l| l.split_whitespace().next() == Some(device))
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_quota_keeps_the_period_when_it_can() {
        assert_eq!(cpu_quota(200, 100_000), (20_000, 100_000));
        assert_eq!(cpu_quota(1500, 100_000), (150_000, 100_000));
        assert_eq!(cpu_quota(5, 100_000), (5_000, 1_000_000));
        assert_eq!(cpu_quota(1, 100_000), (1_000, 1_000_000));
    }

    #[test]
    fn settings_are_validated() {
        assert!(validate(&Setting::CpuLimit { millicores: 0 }).is_err());
        let io = |device: &str, r, w| Setting::IoLimit {
            device: device.to_string(),
            read_bps: r,
            write_bps: w,
        };
        assert!(validate(&io("8:0", 1, 0)).is_ok());
        assert!(validate(&io("8:0", 0, 0)).is_err());
        assert!(validate(&io("sda", 1, 0)).is_err());
        assert!(validate(&io("8:x", 1, 0)).is_err());
    }

    #[test]
    fn device_lines() {
        let io =
            "8:0 rbps=1 wbps=max riops=max wiops=max\n254:0 rbps=max wbps=2 riops=max wiops=max\n";
        assert_eq!(
            device_line(io, "254:0").as_deref(),
            Some("254:0 rbps=max wbps=2 riops=max wiops=max")
        );
        assert_eq!(device_line(io, "254:1"), None);
    }
}
