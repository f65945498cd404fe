//! TLS on the admin listener (rustls through Pingora): the certificate and
//! key files are checked when the config is loaded, so that a bad file is
//! an error at its place in the config and never a failed start.

use crate::config::AdminTls;

/// What is wrong with the certificate or the key.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{0}")]
    Cert(String),
    #[error("{0}")]
    Key(String),
}

/// Checks that `tls.cert` holds a PEM certificate chain and `tls.key` the
/// PEM private key that belongs to it.
pub fn check(tls: &AdminTls) -> Result<(), TlsError> {
    let read = |p: &std::path::Path| {
        std::fs::read(p).map_err(|e| format!("cannot be read ({}): {e}", p.display()))
    };
    let cert = read(&tls.cert).map_err(TlsError::Cert)?;
    if !contains(&cert, b"-----BEGIN CERTIFICATE-----") {
        return Err(TlsError::Cert("holds no PEM certificate".into()));
    }
    let key = read(&tls.key).map_err(TlsError::Key)?;
    if !contains(&key, b"PRIVATE KEY-----") {
        return Err(TlsError::Key("holds no PEM private key".into()));
    }
    let (cert_path, key_path) = (
        tls.cert.to_string_lossy().into_owned(),
        tls.key.to_string_lossy().into_owned(),
    );
    let (chain, key) = match pingora::tls::load_certs_and_key_files(&cert_path, &key_path) {
        Ok(Some(pair)) => pair,
        Ok(None) => {
            return Err(TlsError::Key(
                "holds no private key rustls can use (PKCS#1, PKCS#8 or SEC1)".into(),
            ))
        }
        Err(e) => return Err(TlsError::Cert(format!("is not valid PEM: {e}"))),
    };
    pingora::tls::install_default_crypto_provider();
    pingora::tls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map(drop)
        .map_err(|e| TlsError::Key(format!("does not fit the certificate: {e}")))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
