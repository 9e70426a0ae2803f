//! Mutual TLS 1.3 between peers and for clients, over rustls.
//!
//! A [`Tls`] holds a certificate, its key and the CA that signs every
//! member's and client's certificate. Both sides present a certificate and
//! verify the other's against the CA. The files are read again when they
//! change (checked at most once a second, when a handshake needs them), so
//! a rotated certificate is used for new connections while established
//! ones carry on; a pair that does not load keeps the previous one.
//!
//! The driver wraps the runtime's streams with futures-rustls, so the same
//! code serves every runtime; the core never sees TLS.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use futures_rustls::{TlsAcceptor, TlsConnector, TlsStream};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{CertificateError, ClientConfig, RootCertStore, ServerConfig};

use crate::runtime::{timeout, Runtime};

/// How often the files are looked at, at most.
const RELOAD_CHECK: Duration = Duration::from_secs(1);

/// Where a [`Tls`]'s certificate, key and CA live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain presented to the other side.
    pub cert: PathBuf,
    /// PEM private key of the certificate.
    pub key: PathBuf,
    /// PEM certificate(s) of the CA that signs the other side's.
    pub ca: PathBuf,
}

/// Why TLS settings could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: io::Error,
    },
    /// A file holds no PEM item of the kind needed.
    #[error("{path}: no {what} in it")]
    Missing {
        /// The file.
        path: PathBuf,
        /// `certificate` or `private key`.
        what: &'static str,
    },
    /// rustls refused the certificates or the key.
    #[error("{what}: {reason}")]
    Invalid {
        /// What was being built.
        what: &'static str,
        /// rustls's reason.
        reason: String,
    },
}

/// Counters of a [`Tls`]'s handshakes, both directions together.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TlsStats {
    /// Handshakes completed.
    pub handshakes: u64,
    /// The other side did not speak TLS (a plaintext client).
    pub not_tls: u64,
    /// Its certificate was missing, or not signed by the CA.
    pub bad_certificates: u64,
    /// Its certificate had expired (or was not valid yet).
    pub expired_certificates: u64,
    /// The handshake did not finish within the connect timeout.
    pub timeouts: u64,
    /// Other failures: the other side refused ours, or hung up.
    pub other_failures: u64,
    /// Times new files were loaded.
    pub reloads: u64,
}

/// Mutual TLS settings, shared by every connection of the nodes and
/// clients that carry them (see [`Builder::tls`](crate::Builder::tls) and
/// [`Client::tls`](crate::Client::tls)). Cloning is cheap.
///
/// ```no_run
/// use groupcache_driver::{Tls, TlsFiles};
///
/// let tls = Tls::from_files(TlsFiles {
///     cert: "node.pem".into(),
///     key: "node-key.pem".into(),
///     ca: "ca.pem".into(),
/// })?;
/// # Ok::<(), groupcache_driver::TlsError>(())
/// ```
#[derive(Clone)]
pub struct Tls {
    inner: Arc<Inner>,
    server_name: Option<Arc<str>>,
}

struct Inner {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    current: RwLock<Configs>,
    last_check: Mutex<Instant>,
    counters: Counters,
    /// Whether each kind of failure was logged already: the first is a
    /// warning, the rest are counted.
    logged: [AtomicBool; 5],
}

struct Configs {
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
    https: Arc<ServerConfig>,
    stamp: Stamp,
}

/// What the files looked like when loaded: a change in any reloads them.
type Stamp = [(Option<SystemTime>, u64); 3];

#[derive(Default)]
struct Counters {
    handshakes: AtomicU64,
    not_tls: AtomicU64,
    bad_certificates: AtomicU64,
    expired_certificates: AtomicU64,
    timeouts: AtomicU64,
    other_failures: AtomicU64,
    reloads: AtomicU64,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("files", &self.inner.files)
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// Loads the certificate, key and CA. TLS 1.3 only; both sides present
    /// and verify certificates.
    pub fn from_files(files: TlsFiles) -> Result<Self, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let current = load(&files, &provider)?;
        Ok(Self {
            inner: Arc::new(Inner {
                files,
                provider,
                current: RwLock::new(current),
                last_check: Mutex::new(Instant::now()),
                counters: Counters::default(),
                logged: Default::default(),
            }),
            server_name: None,
        })
    }

    /// Verifies every peer's certificate for `name` instead of the host of
    /// the address dialled (useful when members are dialled by IP address
    /// and share one certificate name, e.g. `groupcache.internal`).
    pub fn server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = Some(name.into().into());
        self
    }

    /// The files in use.
    pub fn files(&self) -> &TlsFiles {
        &self.inner.files
    }

    /// Handshake counters.
    pub fn stats(&self) -> TlsStats {
        let c = &self.inner.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        TlsStats {
            handshakes: get(&c.handshakes),
            not_tls: get(&c.not_tls),
            bad_certificates: get(&c.bad_certificates),
            expired_certificates: get(&c.expired_certificates),
            timeouts: get(&c.timeouts),
            other_failures: get(&c.other_failures),
            reloads: get(&c.reloads),
        }
    }

    /// The server side's settings now (the files read again if they
    /// changed): for an HTTPS front with the same certificate.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.refresh();
        self.inner.current.read().expect("lock").server.clone()
    }

    /// Server settings for an HTTPS front with the same certificate and
    /// key, without asking clients for certificates (browsers, curl,
    /// scrapers), ALPN `http/1.1`; the files read again if they changed.
    pub fn https_config(&self) -> Arc<ServerConfig> {
        self.refresh();
        self.inner.current.read().expect("lock").https.clone()
    }

    /// The client side's settings now (the files read again if they
    /// changed).
    pub fn client_config(&self) -> Arc<ClientConfig> {
        self.refresh();
        self.inner.current.read().expect("lock").client.clone()
    }

    /// Reads the files again if they changed since they were loaded, at
    /// most once a second. A pair that does not load is logged, and the
    /// previous one stays in use.
    fn refresh(&self) {
        {
            let mut last = self.inner.last_check.lock().expect("lock");
            if last.elapsed() < RELOAD_CHECK {
                return;
            }
            *last = Instant::now();
        }
        let stamp = stamp(&self.inner.files);
        if self.inner.current.read().expect("lock").stamp == stamp {
            return;
        }
        match load(&self.inner.files, &self.inner.provider) {
            Ok(fresh) => {
                *self.inner.current.write().expect("lock") = fresh;
                self.inner.counters.reloads.fetch_add(1, Ordering::Relaxed);
                tracing::info!(cert = %self.inner.files.cert.display(), "TLS files changed: reloaded");
            }
            Err(e) => {
                // Keep what works; try again when the files change again.
                self.inner.current.write().expect("lock").stamp = stamp;
                tracing::warn!("TLS files changed but do not load, keeping the previous ones: {e}");
            }
        }
    }

    /// The server half of a handshake on an accepted connection, cut off
    /// after `limit`.
    pub(crate) async fn accept<R: Runtime>(
        &self,
        rt: &R,
        stream: R::Stream,
        limit: Duration,
    ) -> io::Result<TlsStream<R::Stream>> {
        let acceptor = TlsAcceptor::from(self.server_config());
        let done = timeout(rt, limit, acceptor.accept(stream)).await;
        self.outcome(done.map(|r| r.map(TlsStream::Server)), "inbound")
    }

    /// The client half of a handshake with the node at `addr`, cut off
    /// after `limit`.
    pub(crate) async fn connect<R: Runtime>(
        &self,
        rt: &R,
        stream: R::Stream,
        addr: &str,
        limit: Duration,
    ) -> io::Result<TlsStream<R::Stream>> {
        let host = self
            .server_name
            .as_deref()
            .map_or_else(|| host_of(addr), str::to_string);
        let name = ServerName::try_from(host.clone()).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{host:?} is not a server name"),
            )
        })?;
        let connector = TlsConnector::from(self.client_config());
        let done = timeout(rt, limit, connector.connect(name, stream)).await;
        self.outcome(done.map(|r| r.map(TlsStream::Client)), "outbound")
    }

    /// Counts a handshake's outcome and logs the first failure of each kind.
    fn outcome<S>(&self, done: Option<io::Result<S>>, side: &str) -> io::Result<S> {
        let c = &self.inner.counters;
        let err = match done {
            Some(Ok(s)) => {
                c.handshakes.fetch_add(1, Ordering::Relaxed);
                return Ok(s);
            }
            Some(Err(e)) => e,
            None => io::Error::new(
                io::ErrorKind::TimedOut,
                "TLS handshake did not finish in time",
            ),
        };
        let kind = classify(&err);
        let (counter, what) = match kind {
            Kind::NotTls => (&c.not_tls, "the other side does not speak TLS"),
            Kind::BadCertificate => (
                &c.bad_certificates,
                "certificate missing or not signed by the CA",
            ),
            Kind::Expired => (
                &c.expired_certificates,
                "certificate expired or not valid yet",
            ),
            Kind::Timeout => (&c.timeouts, "handshake did not finish in time"),
            Kind::Other => (&c.other_failures, "handshake failed"),
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if !self.inner.logged[kind as usize].swap(true, Ordering::Relaxed) {
            tracing::warn!(side, error = %err, "TLS: {what} (further ones are only counted)");
        } else {
            tracing::debug!(side, error = %err, "TLS: {what}");
        }
        Err(err)
    }
}

#[derive(Clone, Copy)]
enum Kind {
    NotTls = 0,
    BadCertificate = 1,
    Expired = 2,
    Timeout = 3,
    Other = 4,
}

fn classify(e: &io::Error) -> Kind {
    if e.kind() == io::ErrorKind::TimedOut {
        return Kind::Timeout;
    }
    let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) else {
        return Kind::Other;
    };
    match tls {
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => {
            Kind::NotTls
        }
        rustls::Error::InvalidCertificate(CertificateError::Expired)
        | rustls::Error::InvalidCertificate(CertificateError::ExpiredContext { .. })
        | rustls::Error::InvalidCertificate(CertificateError::NotValidYet)
        | rustls::Error::InvalidCertificate(CertificateError::NotValidYetContext { .. }) => {
            Kind::Expired
        }
        rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented => {
            Kind::BadCertificate
        }
        _ => Kind::Other,
    }
}

/// The host part of `host:port` (brackets of an IPv6 address removed).
fn host_of(addr: &str) -> String {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .to_string()
}

fn stamp(f: &TlsFiles) -> Stamp {
    let one = |p: &Path| match std::fs::metadata(p) {
        Ok(m) => (m.modified().ok(), m.len()),
        Err(_) => (None, 0),
    };
    [one(&f.cert), one(&f.key), one(&f.ca)]
}

fn load(f: &TlsFiles, provider: &Arc<CryptoProvider>) -> Result<Configs, TlsError> {
    let stamp = stamp(f);
    let read = |p: &Path| {
        std::fs::read(p).map_err(|source| TlsError::Read {
            path: p.into(),
            source,
        })
    };
    let certs_in = |p: &Path| -> Result<Vec<CertificateDer<'static>>, TlsError> {
        let pem = read(p)?;
        let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<_, _>>()
            .map_err(|e| TlsError::Invalid {
                what: "certificate PEM",
                reason: e.to_string(),
            })?;
        if certs.is_empty() {
            return Err(TlsError::Missing {
                path: p.into(),
                what: "certificate",
            });
        }
        Ok(certs)
    };
    let chain = certs_in(&f.cert)?;
    let key = PrivateKeyDer::from_pem_slice(&read(&f.key)?).map_err(|_| TlsError::Missing {
        path: f.key.clone(),
        what: "private key",
    })?;
    let mut roots = RootCertStore::empty();
    for c in certs_in(&f.ca)? {
        roots.add(c).map_err(|e| TlsError::Invalid {
            what: "CA certificate",
            reason: e.to_string(),
        })?;
    }
    let roots = Arc::new(roots);
    let invalid = |what| {
        move |e: rustls::Error| TlsError::Invalid {
            what,
            reason: e.to_string(),
        }
    };
    let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
        .build()
        .map_err(|e| TlsError::Invalid {
            what: "client verifier",
            reason: e.to_string(),
        })?;
    let server = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(invalid("server settings"))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain.clone(), key.clone_key())
        .map_err(invalid("server certificate and key"))?;
    let mut https = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(invalid("HTTPS settings"))?
        .with_no_client_auth()
        .with_single_cert(chain.clone(), key.clone_key())
        .map_err(invalid("HTTPS certificate and key"))?;
    https.alpn_protocols = vec![b"http/1.1".to_vec()];
    let client = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(invalid("client settings"))?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(invalid("client certificate and key"))?;
    Ok(Configs {
        server: Arc::new(server),
        client: Arc::new(client),
        https: Arc::new(https),
        stamp,
    })
}
