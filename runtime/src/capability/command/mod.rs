//! The `command` capability: programs from the operator's allow-list, for probes.
//!
//! Scope, from the policy's `command.programs`: the guest names a program by exactly the
//! absolute path a grant lists (no search path, no shell, no normalising); a grant that gives
//! `args` globs also fixes how many arguments there are and what each may be. Anything else is
//! denied, naming the grants consulted.
//!
//! What runs is bounded however the guest or the program behaves ([`linux`]): the file must be
//! a regular, executable file that only root (or the agent's user) can change, reached through
//! directories nobody else can write (a symlink is refused, so the allow-list names the file
//! itself); the environment is cleared but for `PATH=/usr/bin:/bin`; stdin is `/dev/null`; the
//! working directory is `/`; stdout and stderr are read as they come and kept up to 64 KiB each;
//! the program runs in a process group of its own, killed whole (SIGKILL) at the timeout and as
//! soon as the program itself exits, so nothing it started outlives the call; the timeout never
//! reaches past the call's own deadline.

#[cfg(target_os = "linux")]
pub mod linux;

use super::{CapError, CapResult, Context, GuestResult, to_guest};
use crate::contract::command::{CommandOutput, Host};
use std::time::{Duration, Instant};

/// Most arguments one call may pass.
pub const MAX_ARGS: usize = 256;
/// Most bytes one argument may hold.
pub const MAX_ARG_BYTES: usize = 4096;
/// Most bytes all arguments together may hold.
pub const MAX_ARGS_TOTAL_BYTES: usize = 32 * 1024;
/// Longest timeout a call may ask for when the call itself has no deadline.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(60);
/// Time kept back from the call's deadline, so the guest can still report a timed-out program.
const DEADLINE_RESERVE: Duration = Duration::from_millis(100);

/// At most this much of a guest-supplied string goes into a message.
fn shown(text: &str) -> String {
    const SHOWN: usize = 120;
    if text.len() <= SHOWN {
        format!("{text:?}")
    } else {
        let mut end = SHOWN;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        format!("{:?}… ({} bytes)", &text[..end], text.len())
    }
}

/// Checks the arguments' bounds: count, size, NUL bytes.
fn check_args(args: &[String]) -> CapResult<()> {
    if args.len() > MAX_ARGS {
        return Err(CapError::Invalid(format!(
            "{} arguments given, at most {MAX_ARGS} are allowed",
            args.len()
        )));
    }
    let mut total = 0;
    for (i, a) in args.iter().enumerate() {
        if a.contains('\0') {
            return Err(CapError::Invalid(format!(
                "argument {i} {} contains a NUL byte",
                shown(a)
            )));
        }
        if a.len() > MAX_ARG_BYTES {
            return Err(CapError::Invalid(format!(
                "argument {i} is {} bytes, at most {MAX_ARG_BYTES} are allowed",
                a.len()
            )));
        }
        total += a.len();
    }
    if total > MAX_ARGS_TOTAL_BYTES {
        return Err(CapError::Invalid(format!(
            "the arguments hold {total} bytes, at most {MAX_ARGS_TOTAL_BYTES} are allowed"
        )));
    }
    Ok(())
}

impl Context {
    /// Whether a grant allows running `program` with `args`; the denial names the grants.
    fn command_scope(&self, program: &str, args: &[String]) -> CapResult<()> {
        let listed: Vec<_> = self
            .grants
            .command
            .iter()
            .filter(|r| r.scope.path == program)
            .collect();
        if listed.is_empty() {
            let allowed: Vec<String> = self
                .grants
                .command
                .iter()
                .map(|r| r.scope.path.clone())
                .collect();
            let allowed = if allowed.is_empty() {
                "no program is allowed".to_string()
            } else {
                format!("allowed programs: {}", allowed.join(", "))
            };
            return Err(self.denial(format!(
                "program {} is not in the command allow-list granted to {} ({}; {allowed})",
                shown(program),
                self.grants.component,
                self.grants.rules_text()
            )));
        }
        let mut refusals = Vec::new();
        for r in listed {
            match r.scope.refuses(args) {
                None => return Ok(()),
                Some(why) => refusals.push(format!("{}: {why}", r.rule)),
            }
        }
        Err(self.denial(format!(
            "the arguments of {program} are outside the scope granted to {} ({})",
            self.grants.component,
            refusals.join("; ")
        )))
    }

    /// The timeout a call gets: what it asked for, never past the call's own deadline.
    fn command_timeout(&self, timeout_ms: u32) -> CapResult<Duration> {
        if timeout_ms == 0 {
            return Err(CapError::Invalid("timeout-ms must be at least 1".into()));
        }
        let asked = Duration::from_millis(u64::from(timeout_ms));
        let left = match self.deadline {
            Some(end) => end
                .saturating_duration_since(Instant::now())
                .saturating_sub(DEADLINE_RESERVE),
            None => MAX_TIMEOUT,
        };
        if left.is_zero() {
            return Err(CapError::Failed(
                "no time is left before the call's deadline to run a program".into(),
            ));
        }
        Ok(asked.min(left))
    }
}

impl Host for Context {
    async fn run(
        &mut self,
        program: String,
        args: Vec<String>,
        timeout_ms: u32,
    ) -> GuestResult<CommandOutput> {
        let r = async {
            check_args(&args)?;
            self.command_scope(&program, &args)?;
            let timeout = self.command_timeout(timeout_ms)?;
            let ran = linux::run(&program, &args, timeout).await?;
            tracing::info!(
                execution = %self.execution,
                plugin = %self.grants.component,
                exit = ?ran.exit_code,
                timed_out = ran.timed_out,
                "ran {program}"
            );
            Ok(ran)
        }
        .await;
        to_guest(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_bounded_and_nul_free() {
        assert!(check_args(&["-h".into(), "127.0.0.1".into()]).is_ok());
        let e = check_args(&["ok".into(), "a\0b".into()]).unwrap_err();
        assert_eq!(
            e,
            CapError::Invalid(r#"argument 1 "a\0b" contains a NUL byte"#.into())
        );
        let e = check_args(&vec![String::new(); MAX_ARGS + 1]).unwrap_err();
        assert!(e.to_string().contains("257 arguments"), "{e}");
        let e = check_args(&["x".repeat(MAX_ARG_BYTES + 1)]).unwrap_err();
        assert!(e.to_string().contains("argument 0 is 4097 bytes"), "{e}");
        let e = check_args(&vec!["x".repeat(MAX_ARG_BYTES); 9]).unwrap_err();
        assert!(e.to_string().contains("36864 bytes"), "{e}");
    }

    #[test]
    fn long_names_are_cut_in_messages() {
        let long = "é".repeat(200);
        let s = shown(&long);
        assert!(s.ends_with("(400 bytes)"), "{s}");
        assert!(s.len() < 200, "{s}");
    }
}
