//! Checks an index as its authors see it, before signing: schema, versions in order, URLs
//! inside the hub, artefacts matching their digests and sizes, imports within the declared
//! capabilities, parameter schemas that are valid JSON Schemas.

use std::fmt;
use std::path::Path;
use std::time::SystemTime;

use serde_json::Value;

use super::source::{UrlForm, check_artifact_url};
use super::{ComponentImports, Digest, HubError, Index, Package, Release, check_imports};

/// One problem found by [`lint`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// What it is about: the index, a package, or `package@version`.
    pub subject: String,
    /// The problem.
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.subject, self.message)
    }
}

/// Lints the index at `index_path`; relative artefact URLs are read from beside it. Returns
/// the problems found (empty when clean); fails only when the index cannot be read.
pub fn lint(index_path: &Path, imports: &dyn ComponentImports) -> Result<Vec<Finding>, HubError> {
    let bytes = std::fs::read(index_path)
        .map_err(|e| HubError::io(format!("reading {}", index_path.display()), e))?;
    let origin = index_path.display().to_string();
    let index = match Index::parse(&bytes, &origin) {
        Ok(index) => index,
        Err(e) => {
            return Ok(vec![Finding {
                subject: origin,
                message: e.to_string(),
            }]);
        }
    };
    let mut findings = Vec::new();
    if super::verify::check_expiry(&index, SystemTime::now()).is_err() {
        findings.push(Finding {
            subject: origin.clone(),
            message: format!("expired at {}", index.expires),
        });
    }
    for package in &index.packages {
        lint_order(package, &mut findings);
        for release in &package.versions {
            if let Err(e) =
                jsonschema::meta::validate(&Value::Object(release.params_schema.clone()))
            {
                findings.push(Finding {
                    subject: format!("{}@{}", package.name, release.version),
                    message: format!("params_schema is not a valid JSON Schema: {e}"),
                });
            }
        }
    }
    findings.extend(artifact_findings(index_path, &index, Some(imports)));
    Ok(findings)
}

/// Checks the artefacts of `index` (read from `index_path`) that relative URLs point to:
/// URLs stay inside the hub, files exist with the declared size and digest, and, given
/// `imports`, their imports stay within the declared capabilities.
pub fn artifact_findings(
    index_path: &Path,
    index: &Index,
    imports: Option<&dyn ComponentImports>,
) -> Vec<Finding> {
    let dir = index_path.parent().unwrap_or(Path::new("."));
    let mut findings = Vec::new();
    for package in &index.packages {
        for release in &package.versions {
            let subject = format!("{}@{}", package.name, release.version);
            for url in &release.urls {
                let problems = match check_artifact_url(url) {
                    Err(reason) => vec![format!("URL escapes the hub: {reason}")],
                    Ok(UrlForm::Absolute(_)) => Vec::new(),
                    Ok(UrlForm::Relative) => {
                        lint_artifact(&dir.join(url), &package.name, release, imports)
                    }
                };
                findings.extend(problems.into_iter().map(|problem| Finding {
                    subject: subject.clone(),
                    message: format!("{url}: {problem}"),
                }));
            }
        }
    }
    findings
}

fn lint_order(package: &Package, findings: &mut Vec<Finding>) {
    for pair in package.versions.windows(2) {
        if pair[0].version <= pair[1].version {
            findings.push(Finding {
                subject: package.name.clone(),
                message: format!(
                    "versions must be newest first: {} is listed before {}",
                    pair[0].version, pair[1].version
                ),
            });
        }
    }
}

fn lint_artifact(
    path: &Path,
    name: &str,
    release: &Release,
    imports: Option<&dyn ComponentImports>,
) -> Vec<String> {
    let (digest, size) = match Digest::of_file(path) {
        Ok(found) => found,
        Err(e) => return vec![e.to_string()],
    };
    let mut problems = Vec::new();
    if size != release.size {
        problems.push(format!(
            "size is {size} bytes, the index says {}",
            release.size
        ));
    }
    if digest != release.digest {
        problems.push(format!(
            "digest is {digest}, the index says {}",
            release.digest
        ));
    }
    let Some(imports) = imports else {
        return problems;
    };
    let imported = std::fs::read(path)
        .map_err(anyhow::Error::from)
        .and_then(|bytes| imports.imported_interfaces(&bytes));
    match imported {
        Ok(imported) => {
            if let Err(e) = check_imports(name, release, &imported) {
                problems.push(e.to_string());
            }
        }
        Err(e) => problems.push(format!("cannot read its imports: {e:#}")),
    }
    problems
}
