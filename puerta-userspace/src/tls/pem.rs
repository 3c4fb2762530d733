//! Certificates, keys and CA bundles from PEM files, with errors that name the file.

use std::path::Path;

use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::TlsError;

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn pem_error(path: &Path, what: impl Into<String>) -> TlsError {
    TlsError::Pem {
        path: path.to_path_buf(),
        what: what.into(),
    }
}

/// Every certificate in `path`, leaf first; at least one.
pub fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let text = read(path)?;
    let chain = CertificateDer::pem_slice_iter(&text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, e.to_string()))?;
    if chain.is_empty() {
        return Err(pem_error(path, "no CERTIFICATE in the file"));
    }
    Ok(chain)
}

/// The first private key in `path` (PKCS#8, PKCS#1 or SEC1).
pub fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let text = read(path)?;
    PrivateKeyDer::from_pem_slice(&text).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => pem_error(path, "no PRIVATE KEY in the file"),
        e => pem_error(path, e.to_string()),
    })
}

/// The CA certificates in `path` as trust anchors; all must be usable.
pub fn roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    for cert in certificates(path)? {
        store.add(cert).map_err(|e| TlsError::Roots {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    }
    Ok(store)
}
