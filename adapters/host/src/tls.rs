//! The TLS client configuration for `mqtts://` and `wss://`: rustls on the `ring` provider, built once when
//! the node starts, so a bad file is an error from `start`, never a reconnect loop.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};

use crate::config;
use crate::error::Error;

/// A file setting and where it came from (an environment variable or a builder setting).
#[derive(Debug, Clone)]
pub(crate) struct FileSetting {
    pub(crate) path: PathBuf,
    pub(crate) name: &'static str,
}

/// What `mqtts://` and `wss://` need per connection: shared, so each attempt clones two handles.
#[derive(Debug, Clone)]
pub(crate) struct Tls {
    pub(crate) config: Arc<ClientConfig>,
    /// The broker URL's host: the name the server's certificate must be valid for.
    pub(crate) server_name: ServerName<'static>,
}

/// The TLS files a node was given.
#[derive(Debug, Clone, Default)]
pub(crate) struct TlsFiles {
    pub(crate) ca: Option<FileSetting>,
    pub(crate) cert: Option<FileSetting>,
    pub(crate) key: Option<FileSetting>,
}

impl TlsFiles {
    /// The first file setting given, to name in an error about all of them.
    pub(crate) fn first_name(&self) -> Option<&'static str> {
        [&self.ca, &self.cert, &self.key].into_iter().flatten().map(|f| f.name).next()
    }
}

fn error(name: &'static str, reason: impl Into<String>) -> Error {
    Error::Tls { name, reason: reason.into() }
}

fn file_error(file: &FileSetting, what: impl std::fmt::Display) -> Error {
    error(file.name, format!("{}: {what}", file.path.display()))
}

/// Every certificate in a PEM file; at least one.
fn certificates(file: &FileSetting) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs = CertificateDer::pem_file_iter(&file.path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| file_error(file, e))?;
    if certs.is_empty() {
        return Err(file_error(file, "no CERTIFICATE block in this PEM file"));
    }
    Ok(certs)
}

/// Builds the client configuration and checks `host` can be verified against a certificate.
///
/// Trust: the CAs in `files.ca` if given, else the system's certificate store. A client
/// certificate needs both `cert` and `key`. `alpn` is offered in the handshake, in order.
pub(crate) fn client(files: &TlsFiles, host: &str, host_name: &'static str, alpn: &[String]) -> Result<Tls, Error> {
    let server_name = ServerName::try_from(host.to_owned())
        .map_err(|_| error(host_name, format!("{host:?} cannot be checked against a server certificate")))?;

    let mut roots = RootCertStore::empty();
    match &files.ca {
        Some(ca) => {
            for cert in certificates(ca)? {
                roots.add(cert).map_err(|e| file_error(ca, e))?;
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            let (added, _ignored) = roots.add_parsable_certificates(native.certs);
            if added == 0 {
                return Err(error(
                    config::TLS_CA,
                    "no CA to trust: the system certificate store is empty or unreadable; name a PEM file",
                ));
            }
        }
    }

    let builder = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| error(host_name, e.to_string()))?
        .with_root_certificates(roots);
    let mut config = match (&files.cert, &files.key) {
        (None, None) => builder.with_no_client_auth(),
        (Some(cert), Some(key)) => {
            let chain = certificates(cert)?;
            let private = PrivateKeyDer::from_pem_file(&key.path).map_err(|e| file_error(key, e))?;
            builder.with_client_auth_cert(chain, private).map_err(|e| file_error(cert, e))?
        }
        (Some(cert), None) => return Err(error(cert.name, "a client certificate needs its private key too")),
        (None, Some(key)) => return Err(error(key.name, "a private key needs its client certificate too")),
    };
    config.alpn_protocols = alpn.iter().map(|name| name.as_bytes().to_vec()).collect();
    Ok(Tls { config: Arc::new(config), server_name })
}

/// The rustls client configuration a node builds for `mqtts://host` or `wss://host`, for another
/// client of the same broker (the management engine), so both ends trust and present
/// certificates the same way: `ca` to trust instead of the system's store, `cert` and `key` for
/// a client certificate. Errors name the `SUBNODE_TLS_*` variable of the file at fault.
pub fn client_config(
    ca: Option<PathBuf>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    host: &str,
) -> Result<Arc<ClientConfig>, Error> {
    client_config_with_alpn(ca, cert, key, &[], host)
}

/// [`client_config`] offering the `alpn` protocol names in the handshake (`SUBNODE_TLS_ALPN`).
pub fn client_config_with_alpn(
    ca: Option<PathBuf>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    alpn: &[String],
    host: &str,
) -> Result<Arc<ClientConfig>, Error> {
    let setting = |path: Option<PathBuf>, name| path.map(|path| FileSetting { path, name });
    let files = TlsFiles {
        ca: setting(ca, config::TLS_CA),
        cert: setting(cert, config::TLS_CERT),
        key: setting(key, config::TLS_KEY),
    };
    Ok(client(&files, host, config::BROKER_URL, alpn)?.config)
}
