//! TLS and mutual TLS for the TCP gears: rustls with the ring provider, certificates and keys
//! read from PEM files when the gear is built, and [`Stream`], a connection with or without
//! TLS.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use schemars::JsonSchema;
use sdk::ConfigError;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector, TlsStream};

use super::Mode;

/// The `tls` map of a TCP gear's configuration: TLS 1.2 or 1.3, with certificates in PEM
/// files (read when the scenario is checked).
///
/// A server needs `cert_file` and `key_file`, and with `client_auth` (mutual TLS) a
/// `ca_file` that client certificates must chain to. A client needs `ca_file` (the servers
/// it trusts), and `cert_file` with `key_file` when the server asks for a certificate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct TlsConfig {
    /// The certificate chain (PEM) this end presents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<String>,
    /// The private key (PEM) of `cert_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<String>,
    /// The certificate authorities (PEM) the other end's certificate must chain to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    /// Client: the name the server's certificate must hold; default the host of `connect`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// Server: whether clients must present a certificate that chains to `ca_file`.
    #[serde(default)]
    pub client_auth: bool,
}

/// TLS as a gear uses it: the server's acceptor, or the client's connector and the name it
/// checks.
#[derive(Clone)]
pub(crate) enum Tls {
    Server(TlsAcceptor),
    Client(TlsConnector, ServerName<'static>),
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tls::Server(_) => f.write_str("Tls::Server"),
            Tls::Client(_, name) => write!(f, "Tls::Client({name:?})"),
        }
    }
}

impl Tls {
    /// Reads the files and builds the configuration of `mode`; `connect` is the client's
    /// `host:port`.
    pub(crate) fn new(config: &TlsConfig, mode: Mode, connect: &str) -> Result<Tls, ConfigError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let field = |key: &str, e: &dyn fmt::Display| ConfigError::field(format!("tls.{key}"), e);
        let identity = match (&config.cert_file, &config.key_file) {
            (Some(cert), Some(key)) => Some((
                certificates(cert).map_err(|e| field("cert_file", &e))?,
                PrivateKeyDer::from_pem_file(key)
                    .map_err(|e| field("key_file", &format_args!("{key}: {e}")))?,
            )),
            (None, None) => None,
            (Some(_), None) => return Err(field("key_file", &"cert_file needs its key_file")),
            (None, Some(_)) => return Err(field("cert_file", &"key_file needs its cert_file")),
        };
        let roots = match &config.ca_file {
            Some(path) => {
                let mut roots = RootCertStore::empty();
                for cert in certificates(path).map_err(|e| field("ca_file", &e))? {
                    roots
                        .add(cert)
                        .map_err(|e| field("ca_file", &format_args!("{path}: {e}")))?;
                }
                Some(Arc::new(roots))
            }
            None => None,
        };
        match mode {
            Mode::Server => {
                let Some((certs, key)) = identity else {
                    return Err(field("cert_file", &"a server needs cert_file and key_file"));
                };
                let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
                    .with_safe_default_protocol_versions()
                    .map_err(|e| field("cert_file", &e))?;
                let builder = match (config.client_auth, roots) {
                    (true, Some(roots)) => {
                        let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider)
                            .build()
                            .map_err(|e| field("ca_file", &e))?;
                        builder.with_client_cert_verifier(verifier)
                    }
                    (true, None) => {
                        return Err(field(
                            "ca_file",
                            &"client_auth needs the CAs that client certificates chain to",
                        ));
                    }
                    (false, _) => builder.with_no_client_auth(),
                };
                let server = builder
                    .with_single_cert(certs, key)
                    .map_err(|e| field("key_file", &e))?;
                Ok(Tls::Server(TlsAcceptor::from(Arc::new(server))))
            }
            Mode::Client => {
                if config.client_auth {
                    return Err(field("client_auth", &"only used in server mode"));
                }
                let Some(roots) = roots else {
                    return Err(field(
                        "ca_file",
                        &"a client needs the CAs it trusts servers by",
                    ));
                };
                let builder = ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .map_err(|e| field("ca_file", &e))?
                    .with_root_certificates(roots);
                let client = match identity {
                    Some((certs, key)) => builder
                        .with_client_auth_cert(certs, key)
                        .map_err(|e| field("key_file", &e))?,
                    None => builder.with_no_client_auth(),
                };
                let host = match &config.server_name {
                    Some(name) => name.as_str(),
                    None => connect.rsplit_once(':').map_or(connect, |(host, _)| host),
                };
                let host = host.trim_start_matches('[').trim_end_matches(']');
                let name = ServerName::try_from(host.to_owned())
                    .map_err(|e| field("server_name", &format_args!("{host:?}: {e}")))?;
                Ok(Tls::Client(TlsConnector::from(Arc::new(client)), name))
            }
        }
    }

    /// The handshake on `stream`, within `deadline`.
    pub(crate) async fn handshake(
        &self,
        stream: TcpStream,
        deadline: Duration,
    ) -> io::Result<Stream> {
        let handshake = async {
            Ok::<_, io::Error>(match self {
                Tls::Server(acceptor) => TlsStream::from(acceptor.accept(stream).await?),
                Tls::Client(connector, name) => {
                    TlsStream::from(connector.connect(name.clone(), stream).await?)
                }
            })
        };
        match tokio::time::timeout(deadline, handshake).await {
            Ok(Ok(tls)) => Ok(Stream::Tls(Box::new(tls))),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no TLS handshake within {deadline:?}"),
            )),
        }
    }
}

/// Every certificate of a PEM file.
fn certificates(path: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{path}: {e}"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{path}: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{path} holds no certificate"));
    }
    Ok(certs)
}

/// A connection, in clear or over TLS.
#[derive(Debug)]
pub(crate) enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
