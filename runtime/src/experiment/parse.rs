//! Reading an experiment file: YAML or JSON, bounded, every error located.

use super::spec::Experiment;

/// One problem in an experiment file, located.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    /// The file, as given.
    pub file: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// The field path (`lanes[0].steps[2].weight`); empty for the whole file.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for SpecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        if !self.path.is_empty() {
            write!(f, ": {}", self.path)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Every problem found in a file (at least one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecErrors(pub Vec<SpecError>);

impl std::fmt::Display for SpecErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for SpecErrors {}

/// Parses and checks an experiment file's text; `file` names it in errors.
pub fn parse(text: &str, file: &str) -> Result<Experiment, SpecErrors> {
    let _ = (text, file);
    todo!("parse")
}

/// The experiment file's JSON Schema.
pub fn schema() -> serde_json::Value {
    todo!("schema")
}
