//! The `[outbound]` table of the configuration file (`--config`): certificate authorities
//! probes' HTTPS trusts besides webpki's public roots, for services behind an internal CA.
//!
//! ```toml
//! [outbound]
//! ca_files = ["/etc/ssl/internal-ca.pem"]   # PEM, one or more certificates each
//! ```
//!
//! Verification stays on: an extra root only adds who may sign a server's certificate.

use anyhow::{Context as _, Result, bail};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The most bytes of one CA file.
const MAX_CA_FILE: u64 = 1 << 20;
/// The most CA files.
const MAX_CA_FILES: usize = 64;

/// The `[outbound]` table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboundConfig {
    /// PEM files of certificate authorities to trust besides webpki's roots; relative paths are
    /// relative to the configuration file.
    #[serde(default)]
    pub ca_files: Vec<PathBuf>,
}

#[derive(Deserialize)]
struct ConfigFile {
    #[serde(default)]
    outbound: Option<OutboundConfig>,
}

impl OutboundConfig {
    /// Reads the `[outbound]` table of the configuration file at `path` (none: the default).
    pub fn load(path: &Path) -> Result<OutboundConfig> {
        let text = crate::component::read_bounded(path, 1 << 20, "configuration")
            .and_then(|b| String::from_utf8(b).map_err(anyhow::Error::from))
            .with_context(|| format!("cannot read {}", path.display()))?;
        let file: ConfigFile =
            toml::from_str(&text).with_context(|| format!("{}: [outbound]", path.display()))?;
        let mut config = file.outbound.unwrap_or_default();
        let base = path.parent().unwrap_or(Path::new("."));
        for f in &mut config.ca_files {
            if f.is_relative() {
                *f = base.join(&*f);
            }
        }
        Ok(config)
    }

    /// The certificates of every CA file, each file bounded in size and holding at least one.
    pub fn trusted_roots(&self) -> Result<Vec<CertificateDer<'static>>> {
        if self.ca_files.len() > MAX_CA_FILES {
            bail!(
                "[outbound] ca_files lists {} files; at most {MAX_CA_FILES}",
                self.ca_files.len()
            );
        }
        let mut roots = Vec::new();
        for (i, file) in self.ca_files.iter().enumerate() {
            let at = || format!("[outbound] ca_files[{i}] ({})", file.display());
            let pem =
                crate::component::read_bounded(file, MAX_CA_FILE, "CA file").with_context(at)?;
            let certs = CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| anyhow::anyhow!("{e}"))
                .with_context(|| format!("{}: not PEM certificates", at()))?;
            if certs.is_empty() {
                bail!("{}: holds no PEM certificate", at());
            }
            roots.extend(certs);
        }
        Ok(roots)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn ca_files_are_read_relative_to_the_file_and_bad_ones_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("faultline.toml");
        std::fs::write(&config, "[hub]\n[outbound]\nca_files = [\"ca.pem\"]\n").unwrap();
        let loaded = OutboundConfig::load(&config).unwrap();
        assert_eq!(loaded.ca_files, vec![dir.path().join("ca.pem")]);
        let e = format!("{:#}", loaded.trusted_roots().unwrap_err());
        assert!(e.starts_with("[outbound] ca_files[0] ("), "{e}");

        std::fs::write(dir.path().join("ca.pem"), "not a certificate\n").unwrap();
        let e = format!("{:#}", loaded.trusted_roots().unwrap_err());
        assert!(e.contains("holds no PEM certificate"), "{e}");

        std::fs::write(&config, "[outbound]\nca_file = \"x\"\n").unwrap();
        let e = format!("{:#}", OutboundConfig::load(&config).unwrap_err());
        assert!(e.contains("unknown field `ca_file`"), "{e}");

        // No table at all: nothing extra is trusted.
        std::fs::write(&config, "[hub]\n").unwrap();
        let none = OutboundConfig::load(&config).unwrap();
        assert!(none.trusted_roots().unwrap().is_empty());
    }
}
