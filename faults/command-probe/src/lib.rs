//! `command-probe`: runs a program from the operator's allow-list and passes when its exit code
//! is one of `exit_codes` and its stdout holds what `stdout_contains` and `stdout_regex` ask.
//!
//! The program answering wrong, ending by a signal or running past `timeout` fails the check;
//! a program the policy does not allow, or that is missing, means the probe could not run (the
//! host's error is returned, and experiments count it as not applicable).

use faultline_sdk::{Capability, Error, HumanDuration, Outcome, Probe, ProbeContext, command};
use regex_lite::Regex;
use schemars::JsonSchema;
use serde::Deserialize;
use std::time::Duration;

fn zero() -> Vec<i32> {
    vec![0]
}

fn five_seconds() -> HumanDuration {
    HumanDuration::from_secs(5)
}

/// Longest `timeout` accepted: the host also cuts it at the call's own deadline.
const MAX_TIMEOUT: Duration = Duration::from_secs(600);

/// Parameters of `command-probe`.
#[derive(Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
#[serde(deny_unknown_fields)]
struct Params {
    /// The program, by the absolute path the policy's `command.programs` lists (no search path,
    /// no shell: `/usr/bin/pg_isready`, not `pg_isready`).
    program: String,
    /// Its arguments, each passed as is (no shell quoting, globbing or variables).
    #[serde(default)]
    args: Vec<String>,
    /// Exit codes that pass.
    #[serde(default = "zero")]
    exit_codes: Vec<i32>,
    /// Text stdout must contain.
    stdout_contains: Option<String>,
    /// A regex (Rust `regex` syntax, ASCII classes) stdout must match somewhere.
    stdout_regex: Option<String>,
    /// How long the program may run (`500ms`, `5s`); it is killed, with everything it started,
    /// when this passes, and the check fails.
    #[serde(default = "five_seconds")]
    timeout: HumanDuration,
}

/// Parameters checked and compiled.
struct Checks {
    timeout: Duration,
    regex: Option<Regex>,
}

impl Params {
    fn compile(&self) -> Result<Checks, Error> {
        if !self.program.starts_with('/') {
            return Err(Error::invalid(format!(
                "program {:?} must be an absolute path, as the policy lists it",
                self.program
            )));
        }
        if self.exit_codes.is_empty() {
            return Err(Error::invalid("exit_codes must list at least one code"));
        }
        let timeout = self.timeout.get();
        if timeout < Duration::from_millis(1) || timeout > MAX_TIMEOUT {
            return Err(Error::invalid(format!(
                "timeout \"{}\" is out of range (1ms to 10m)",
                self.timeout
            )));
        }
        let regex = match &self.stdout_regex {
            Some(re) => Some(
                Regex::new(re).map_err(|e| Error::invalid(format!("stdout_regex {re:?}: {e}")))?,
            ),
            None => None,
        };
        Ok(Checks { timeout, regex })
    }
}

/// At most `max` characters of `text`, on one line.
fn snippet(text: &str, max: usize) -> String {
    let one_line = text.trim().replace('\n', " ⏎ ");
    match one_line.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &one_line[..i]),
        None => one_line,
    }
}

struct CommandProbe;

impl Probe for CommandProbe {
    type Params = Params;

    const SUMMARY: &'static str =
        "Runs an allow-listed program and checks its exit code and stdout";
    // `command` is declared by importing it: the 0.1 `capability` enum predates it.
    const CAPABILITIES: &'static [Capability] = &[];

    fn validate(params: &Params) -> Result<(), Error> {
        params.compile().map(|_| ())
    }

    fn check(params: Params, _: &ProbeContext) -> Result<Outcome, Error> {
        let checks = params.compile()?;
        let timeout_ms = u32::try_from(checks.timeout.as_millis()).unwrap_or(u32::MAX);
        let out = command::run(&params.program, &params.args, timeout_ms)?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let elapsed_ms = out.elapsed_us as f64 / 1000.0;
        let mut wrong = Vec::new();
        if out.timed_out {
            wrong.push(format!("timed out after {}", params.timeout));
        } else {
            match out.exit_code {
                None => wrong.push("ended by a signal".to_string()),
                Some(code) if !params.exit_codes.contains(&code) => wrong.push(format!(
                    "exit code {code}, expected {}",
                    if params.exit_codes.len() == 1 {
                        params.exit_codes[0].to_string()
                    } else {
                        format!("one of {:?}", params.exit_codes)
                    }
                )),
                Some(_) => {}
            }
            if let Some(text) = &params.stdout_contains
                && !stdout.contains(text.as_str())
            {
                wrong.push(format!("stdout does not contain {text:?}"));
            }
            if let Some(re) = &checks.regex
                && !re.is_match(&stdout)
            {
                wrong.push(format!("stdout does not match /{}/", re.as_str()));
            }
        }
        let cut = if out.truncated {
            " (output cut at 64 KiB)"
        } else {
            ""
        };
        let message = if wrong.is_empty() {
            format!(
                "{} exited {} in {elapsed_ms:.1} ms{cut}",
                params.program,
                out.exit_code.unwrap_or_default()
            )
        } else {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let mut m = format!("{}: {}{cut}", params.program, wrong.join("; "));
            if !stdout.trim().is_empty() {
                m.push_str(&format!("; stdout: {}", snippet(&stdout, 200)));
            }
            if !stderr.trim().is_empty() {
                m.push_str(&format!("; stderr: {}", snippet(&stderr, 200)));
            }
            m
        };
        Ok(Outcome {
            ok: wrong.is_empty(),
            message,
            value: Some(elapsed_ms),
        })
    }
}

faultline_sdk::export_probe!(CommandProbe);
