//! Certificates made in the test (rcgen): a CA, a certificate it signs for
//! every loopback address, and the bad ones (another CA's, an expired
//! one), written to a directory of their own that is removed on drop.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair,
    SanType,
};

use crate::{Tls, TlsFiles};

/// A CA and certificates, as PEM files in a directory of their own.
pub struct TestPki {
    dir: PathBuf,
    ca: CertifiedIssuer<'static, KeyPair>,
}

/// Which kind of certificate [`TestPki::issue`] makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Valid now, for every loopback address and `localhost`.
    Good,
    /// Expired years ago.
    Expired,
}

impl TestPki {
    /// A fresh CA, named `name` in its subject.
    pub fn new(name: &str) -> Self {
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "groupcache-pki-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).expect("a directory for the certificates");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("CA key"))
            .expect("CA certificate");
        std::fs::write(dir.join("ca.pem"), ca.pem()).expect("write the CA");
        Self { dir, ca }
    }

    /// The CA's certificate file.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// Issues a certificate and key signed by this CA as `NAME.pem` and
    /// `NAME-key.pem`, replacing any of that name; returns the files, with
    /// this CA as theirs.
    pub fn issue(&self, name: &str, kind: Kind) -> TlsFiles {
        let mut params =
            CertificateParams::new(vec!["localhost".to_string()]).expect("certificate params");
        params.distinguished_name.push(DnType::CommonName, name);
        for ip in [
            IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)),
            IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)),
            IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3)),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
        ] {
            params.subject_alt_names.push(SanType::IpAddress(ip));
        }
        if kind == Kind::Expired {
            params.not_before = date_time_ymd(2020, 1, 1);
            params.not_after = date_time_ymd(2021, 1, 1);
        }
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.ca).expect("certificate");
        let files = TlsFiles {
            cert: self.dir.join(format!("{name}.pem")),
            key: self.dir.join(format!("{name}-key.pem")),
            ca: self.ca_file(),
        };
        write_atomically(&files.cert, &cert.pem());
        write_atomically(&files.key, &key.serialize_pem());
        files
    }

    /// A [`Tls`] with a good certificate named `name`.
    pub fn tls(&self, name: &str) -> Tls {
        Tls::from_files(self.issue(name, Kind::Good)).expect("TLS settings load")
    }
}

/// Replaces a file in one step, as cert-manager's symlink swap does: a
/// reader never sees half of it.
fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

impl Drop for TestPki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
