//! The webhook's serving certificate in rustls, swapped in place when it is renewed:
//! handshakes after a swap get the new one.

use std::sync::{Arc, PoisonError, RwLock};

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// Why a certificate could not be served.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The PEM holds no certificate or no key.
    #[error("cannot read the webhook certificate: {0}")]
    Pem(#[from] rustls::pki_types::pem::Error),
    /// rustls refused the key or the configuration.
    #[error("cannot use the webhook certificate: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The certificate the webhook serves; none until the first is set.
#[derive(Debug, Default)]
pub struct ServingCert {
    current: RwLock<Option<(String, Arc<CertifiedKey>)>>,
}

impl ServingCert {
    /// Serves `cert` (PEM chain) with `key` (PEM) from now on; whether it differs from the
    /// one served so far.
    pub fn set(&self, cert: &str, key: &str) -> Result<bool, TlsError> {
        let fingerprint = format!("{cert}{key}");
        if self
            .read()
            .as_ref()
            .is_some_and(|(current, _)| *current == fingerprint)
        {
            return Ok(false);
        }
        let chain =
            CertificateDer::pem_slice_iter(cert.as_bytes()).collect::<Result<Vec<_>, _>>()?;
        if chain.is_empty() {
            return Err(TlsError::Pem(rustls::pki_types::pem::Error::NoItemsFound));
        }
        let key = PrivateKeyDer::from_pem_slice(key.as_bytes())?;
        let signing_key = rustls::crypto::ring::sign::any_supported_type(&key)?;
        let certified = Arc::new(CertifiedKey::new(chain, signing_key));
        *self.current.write().unwrap_or_else(PoisonError::into_inner) =
            Some((fingerprint, certified));
        Ok(true)
    }

    /// Whether a certificate is set.
    pub fn is_set(&self) -> bool {
        self.read().is_some()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Option<(String, Arc<CertifiedKey>)>> {
        self.current.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// A rustls server configuration that serves whatever is set at each handshake
    /// (HTTP/1.1, which is what the API server's webhook client speaks without ALPN h2).
    pub fn server_config(self: &Arc<Self>) -> Result<ServerConfig, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }
}

impl ResolvesServerCert for ServingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.read().as_ref().map(|(_, key)| key.clone())
    }
}
