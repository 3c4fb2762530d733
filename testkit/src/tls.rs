//! A throwaway certificate authority for TLS tests and benches: a CA, and certificates it signs for
//! loopback servers and clients, written as PEM files where redis-server, redis-cli, Python and
//! Node.js clients and Puerta all read them.

use std::path::{Path, PathBuf};

use anyhow::Context;
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, SanType,
};

pub struct Pki {
    dir: PathBuf,
    name: String,
    ca: Certificate,
    ca_key: KeyPair,
}

/// A certificate and its private key, as PEM files.
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Pki {
    /// A new CA called `name`, its certificate in `dir/<name>-ca.pem`.
    pub fn new(dir: &Path, name: &str) -> anyhow::Result<Pki> {
        let ca_key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        let ca = params.self_signed(&ca_key)?;
        let pki = Pki {
            dir: dir.to_path_buf(),
            name: name.to_string(),
            ca,
            ca_key,
        };
        write(&pki.ca_file(), &pki.ca.pem())?;
        Ok(pki)
    }

    pub fn ca_file(&self) -> PathBuf {
        self.dir.join(format!("{}-ca.pem", self.name))
    }

    /// A certificate called `name` (its common name too) for 127.0.0.1 and `localhost`, good for
    /// servers and clients alike.
    pub fn issue(&self, name: &str) -> anyhow::Result<Issued> {
        self.issue_with(name, None)
    }

    /// [`Pki::issue`], expiring at midnight UTC of the date given.
    pub fn issue_expiring(&self, name: &str, y: i32, m: u8, d: u8) -> anyhow::Result<Issued> {
        self.issue_with(name, Some((y, m, d)))
    }

    fn issue_with(&self, name: &str, expiry: Option<(i32, u8, u8)>) -> anyhow::Result<Issued> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(vec!["localhost".to_string()])?;
        params
            .subject_alt_names
            .push(SanType::IpAddress([127, 0, 0, 1].into()));
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        if let Some((y, m, d)) = expiry {
            params.not_after = rcgen::date_time_ymd(y, m, d);
        }
        let cert = params.signed_by(&key, &self.ca, &self.ca_key)?;
        let issued = Issued {
            cert: self.dir.join(format!("{name}.pem")),
            key: self.dir.join(format!("{name}.key")),
        };
        write(&issued.cert, &cert.pem())?;
        write(&issued.key, &key.serialize_pem())?;
        Ok(issued)
    }
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("write {}", path.display()))
}
