//! Times in reports: RFC 3339 timestamps for files, durations and offsets from the run's start
//! for people. A record's times are not trusted to be ordered or in range: nothing here
//! overflows or panics.

use std::fmt::Write as _;
use std::time::{Duration, UNIX_EPOCH};

/// `ms` since the Unix epoch as `2026-12-01T13:45:18.123Z`; `<ms> ms since the epoch` when it
/// is past what RFC 3339 can write (the year 9999).
pub(super) fn rfc3339(ms: u64) -> String {
    let mut out = String::new();
    let written = UNIX_EPOCH
        .checked_add(Duration::from_millis(ms))
        .is_some_and(|t| write!(out, "{}", humantime::format_rfc3339_millis(t)).is_ok());
    if written {
        out
    } else {
        format!("{ms} ms since the epoch")
    }
}

/// How long from `start` to `end`, in milliseconds; zero when `end` is before `start`.
pub(super) fn span(start: u64, end: u64) -> u64 {
    end.saturating_sub(start)
}

/// Milliseconds as seconds, with three decimals (JUnit's `time`); zero for a value that is
/// not finite or negative.
pub(super) fn seconds(ms: f64) -> String {
    let ms = if ms.is_finite() && ms > 0.0 { ms } else { 0.0 };
    format!("{:.3}", ms / 1000.0)
}

/// A duration for people: `850 ms`, `12.3 s`, `4 m 05 s`, `2 h 03 m 09 s`.
pub(super) fn duration(ms: u64) -> String {
    if ms < 1000 {
        return format!("{ms} ms");
    }
    if ms < 60_000 {
        return format!("{:.1} s", ms as f64 / 1000.0);
    }
    let s = ms / 1000;
    if s < 3600 {
        return format!("{} m {:02} s", s / 60, s % 60);
    }
    format!("{} h {:02} m {:02} s", s / 3600, (s / 60) % 60, s % 60)
}

/// The time `at` as an offset from the run's start `t0`: `+12.345 s`, `-0.200 s`, or `—` when
/// there is no time.
pub(super) fn offset(t0: u64, at: Option<u64>) -> String {
    match at {
        None => "—".to_string(),
        Some(at) if at >= t0 => format!("+{:.3} s", (at - t0) as f64 / 1000.0),
        Some(at) => format!("-{:.3} s", (t0 - at) as f64 / 1000.0),
    }
}

/// A step for the time axis: 1, 2 or 5 times a power of ten milliseconds, the smallest that
/// gives at most ten ticks over `span` milliseconds.
pub(super) fn tick_step(span: u64) -> u64 {
    let mut power: u64 = 1;
    loop {
        for mult in [1, 2, 5] {
            let step = power.saturating_mul(mult);
            if span / step <= 10 {
                return step;
            }
        }
        match power.checked_mul(10) {
            Some(next) => power = next,
            None => return span.max(1),
        }
    }
}

/// The label of a tick `ms` after the start, written as finely as `step` needs: `0.25s`,
/// `15s`, `2m30s`, `1h05m`.
pub(super) fn tick_label(ms: u64, step: u64) -> String {
    if step < 1000 {
        let decimals = if step >= 100 {
            1
        } else if step >= 10 {
            2
        } else {
            3
        };
        return format!("{:.decimals$}s", ms as f64 / 1000.0);
    }
    let s = ms / 1000;
    if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        match s % 60 {
            0 => format!("{}m", s / 60),
            rest => format!("{}m{rest:02}s", s / 60),
        }
    } else {
        format!("{}h{:02}m", s / 3600, (s / 60) % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_in_and_out_of_range() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_796_132_718_123), "2026-12-01T13:45:18.123Z");
        assert_eq!(
            rfc3339(u64::MAX),
            format!("{} ms since the epoch", u64::MAX)
        );
    }

    #[test]
    fn ticks_are_one_two_five_steps() {
        assert_eq!(tick_step(0), 1);
        assert_eq!(tick_step(10), 1);
        assert_eq!(tick_step(11), 2);
        assert_eq!(tick_step(30_000), 5000);
        assert_eq!(tick_step(95_000), 10_000);
        assert!(u64::MAX / tick_step(u64::MAX) <= 10);
        assert_eq!(tick_label(15_000, 5000), "15s");
        assert_eq!(tick_label(150_000, 10_000), "2m30s");
        assert_eq!(tick_label(250, 50), "0.25s");
        assert_eq!(tick_label(3_900_000, 600_000), "1h05m");
    }

    #[test]
    fn durations_and_offsets_for_people() {
        assert_eq!(duration(850), "850 ms");
        assert_eq!(duration(12_340), "12.3 s");
        assert_eq!(duration(245_000), "4 m 05 s");
        assert_eq!(duration(7_389_000), "2 h 03 m 09 s");
        assert_eq!(offset(1000, Some(13_345)), "+12.345 s");
        assert_eq!(offset(1000, Some(800)), "-0.200 s");
        assert_eq!(offset(1000, None), "—");
        assert_eq!(seconds(f64::NAN), "0.000");
        assert_eq!(seconds(1500.0), "1.500");
    }
}
