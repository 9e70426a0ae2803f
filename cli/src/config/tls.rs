//! TLS settings of `serve`: the files, as flags or a `[tls]` table.

use std::path::PathBuf;

use groupcache_tokio::{Tls, TlsFiles};
use serde::{Deserialize, Serialize};

/// TLS files, as flags (`--tls-cert`, `--tls-key`, `--tls-ca`,
/// `--tls-server-name`) or a TOML `[tls]` table (`cert`, `key`, `ca`,
/// `server_name`).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct TlsSpec {
    /// PEM certificate (chain) this side presents; with --tls-key and
    /// --tls-ca, every connection speaks mutual TLS 1.3.
    #[arg(long)]
    #[serde(rename = "cert")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long)]
    #[serde(rename = "key")]
    pub tls_key: Option<PathBuf>,
    /// PEM certificate of the CA that signs every member's and client's
    /// certificate.
    #[arg(long)]
    #[serde(rename = "ca")]
    pub tls_ca: Option<PathBuf>,
    /// Verify nodes' certificates for this name instead of the host dialled.
    #[arg(long)]
    #[serde(rename = "server_name")]
    pub tls_server_name: Option<String>,
}

impl TlsSpec {
    /// Loads the files: all three or none.
    ///
    /// ```
    /// use groupcache_cli::config::TlsSpec;
    /// assert!(TlsSpec::default().load().unwrap().is_none());
    /// let half = TlsSpec { tls_cert: Some("c.pem".into()), ..Default::default() };
    /// assert!(half.load().unwrap_err().contains("all three"));
    /// ```
    pub fn load(&self) -> Result<Option<Tls>, String> {
        let (cert, key, ca) = match (&self.tls_cert, &self.tls_key, &self.tls_ca) {
            (None, None, None) => return Ok(None),
            (Some(c), Some(k), Some(a)) => (c.clone(), k.clone(), a.clone()),
            _ => return Err("TLS needs all three of --tls-cert, --tls-key and --tls-ca".into()),
        };
        let tls = Tls::from_files(TlsFiles { cert, key, ca }).map_err(|e| format!("TLS: {e}"))?;
        Ok(Some(match &self.tls_server_name {
            Some(n) => tls.server_name(n.clone()),
            None => tls,
        }))
    }
}
