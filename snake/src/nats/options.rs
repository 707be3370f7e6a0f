//! How to reach a NATS server: addresses, credentials, TLS and reconnection.

use std::path::PathBuf;
use std::time::Duration;

/// Options for [`Snake::nats`](crate::Snake::nats): server addresses, authentication, TLS and
/// reconnection.
///
/// ```
/// use std::time::Duration;
/// use snake::NatsOptions;
///
/// let options = NatsOptions::new("tls://nats-1:4222")
///     .url("tls://nats-2:4222")
///     .user_and_password("rack-1", "s3cret")
///     .root_certificate("/etc/fluxrig/ca.pem")
///     .client_certificate("/etc/fluxrig/rack-1.pem", "/etc/fluxrig/rack-1.key")
///     .name("rack-1")
///     .max_reconnects(Some(60))
///     .connection_timeout(Duration::from_secs(2));
/// // Secrets stay out of logs.
/// assert!(!format!("{options:?}").contains("s3cret"));
/// ```
#[derive(Clone)]
#[must_use]
pub struct NatsOptions {
    pub(crate) urls: Vec<String>,
    pub(crate) token: Option<String>,
    pub(crate) user_password: Option<(String, String)>,
    pub(crate) root_certificates: Vec<PathBuf>,
    pub(crate) client_certificate: Option<(PathBuf, PathBuf)>,
    pub(crate) require_tls: bool,
    pub(crate) name: Option<String>,
    pub(crate) max_reconnects: Option<usize>,
    pub(crate) connection_timeout: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) allow_plaintext_credentials: bool,
}

impl NatsOptions {
    /// Options for the server at `url` (`nats://host:4222`, `tls://host:4222`, or
    /// `host:port`): no credentials, TLS when the server asks for it, a 5 s connection
    /// timeout, a 5 s timeout for JetStream answers, and reconnection forever.
    pub fn new(url: impl Into<String>) -> Self {
        NatsOptions {
            urls: vec![url.into()],
            token: None,
            user_password: None,
            root_certificates: Vec::new(),
            client_certificate: None,
            require_tls: false,
            name: None,
            max_reconnects: None,
            connection_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(5),
            allow_plaintext_credentials: false,
        }
    }

    /// Another server of the same cluster, tried when the others fail.
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.urls.push(url.into());
        self
    }

    /// Authenticates with a token.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Authenticates with a user name and a password.
    pub fn user_and_password(
        mut self,
        user: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        self.user_password = Some((user.into(), password.into()));
        self
    }

    /// Trusts the certificate authorities in this PEM file (besides the system's).
    pub fn root_certificate(mut self, pem: impl Into<PathBuf>) -> Self {
        self.root_certificates.push(pem.into());
        self
    }

    /// Presents this client certificate and key (PEM files) for mutual TLS.
    pub fn client_certificate(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.client_certificate = Some((cert.into(), key.into()));
        self
    }

    /// Refuses to connect without TLS.
    pub fn require_tls(mut self, required: bool) -> Self {
        self.require_tls = required;
        self
    }

    /// The connection's name, as the server's monitoring shows it.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// How many reconnection attempts in a row before the connection closes for good;
    /// `None` (the default) retries forever.
    pub fn max_reconnects(mut self, attempts: Option<usize>) -> Self {
        self.max_reconnects = attempts;
        self
    }

    /// How long one connection attempt may take.
    pub fn connection_timeout(mut self, timeout: Duration) -> Self {
        self.connection_timeout = timeout;
        self
    }

    /// How long to wait for JetStream's answers (stream acknowledgements, consumer and
    /// bucket operations).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }
}

impl std::fmt::Debug for NatsOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsOptions")
            .field(
                "urls",
                &self.urls.iter().map(|u| redact_url(u)).collect::<Vec<_>>(),
            )
            .field("token", &self.token.as_ref().map(|_| "<hidden>"))
            .field(
                "user",
                &self.user_password.as_ref().map(|(user, _)| user.as_str()),
            )
            .field("password", &self.user_password.as_ref().map(|_| "<hidden>"))
            .field("root_certificates", &self.root_certificates)
            .field("client_certificate", &self.client_certificate)
            .field("require_tls", &self.require_tls)
            .field("name", &self.name)
            .field("max_reconnects", &self.max_reconnects)
            .field("connection_timeout", &self.connection_timeout)
            .field("request_timeout", &self.request_timeout)
            .field(
                "allow_plaintext_credentials",
                &self.allow_plaintext_credentials,
            )
            .finish()
    }
}

impl NatsOptions {
    /// Sends credentials over a connection that is not TLS to a host that is not loopback.
    /// Off by default: such a connection is refused with [`Error::PlaintextCredentials`],
    /// because anyone on the path reads the token or password.
    ///
    /// [`Error::PlaintextCredentials`]: crate::Error::PlaintextCredentials
    pub fn allow_plaintext_credentials(mut self, allow: bool) -> Self {
        self.allow_plaintext_credentials = allow;
        self
    }

    /// The first server URL that would carry credentials in clear to a host other than
    /// loopback, if any (credentials: a token, a user and password, or a `user:pass@` part of
    /// a URL; in clear: no `tls://` scheme and TLS not required).
    pub(crate) fn plaintext_credentials(&self) -> Option<String> {
        if self.allow_plaintext_credentials || self.require_tls {
            return None;
        }
        let configured = self.token.is_some() || self.user_password.is_some();
        self.urls
            .iter()
            .find(|url| {
                let (scheme, authority) = split_url(url);
                let tls = scheme.eq_ignore_ascii_case("tls");
                let has_userinfo = authority.contains('@');
                !tls && (configured || has_userinfo) && !is_loopback(host_of(authority))
            })
            .map(|url| redact_url(url))
    }
}

/// `scheme://authority/...` into the scheme (empty without one) and the authority.
fn split_url(url: &str) -> (&str, &str) {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    (scheme, authority)
}

/// The host of an authority (`user:pass@host:port`, `[::1]:4222`).
fn host_of(authority: &str) -> &str {
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if let Some(rest) = hostport.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    hostport.split(':').next().unwrap_or(hostport)
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The URL with any `user:password@` part replaced, for logs and `Debug`.
pub(crate) fn redact_url(url: &str) -> String {
    let (scheme, authority) = split_url(url);
    match authority.rsplit_once('@') {
        Some((_, host)) => {
            let rest = &url[url
                .find(authority)
                .map_or(url.len(), |i| i + authority.len())..];
            if scheme.is_empty() {
                format!("<hidden>@{host}{rest}")
            } else {
                format!("{scheme}://<hidden>@{host}{rest}")
            }
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_urls_never_reach_debug() {
        let options =
            NatsOptions::new("nats://rack:s3cret@nats-1:4222/x").url("tls://tok3n@nats-2:4222");
        let text = format!("{options:?}");
        assert!(
            !text.contains("s3cret") && !text.contains("tok3n"),
            "{text}"
        );
        assert!(text.contains("nats://<hidden>@nats-1:4222/x"), "{text}");
        assert!(text.contains("tls://<hidden>@nats-2:4222"), "{text}");
    }

    #[test]
    fn credentials_in_clear_to_another_host_are_refused_unless_allowed() {
        let check = |o: NatsOptions| o.plaintext_credentials();
        assert_eq!(
            check(NatsOptions::new("nats://nats-1:4222").token("t")),
            Some("nats://nats-1:4222".to_owned())
        );
        assert_eq!(
            check(NatsOptions::new("nats://u:p@10.0.0.1:4222")),
            Some("nats://<hidden>@10.0.0.1:4222".to_owned())
        );
        // Loopback, TLS, no credentials, or an explicit allowance are fine.
        assert_eq!(
            check(NatsOptions::new("nats://127.0.0.1:4222").token("t")),
            None
        );
        assert_eq!(
            check(NatsOptions::new("nats://[::1]:4222").token("t")),
            None
        );
        assert_eq!(
            check(NatsOptions::new("nats://localhost:4222").token("t")),
            None
        );
        assert_eq!(
            check(NatsOptions::new("tls://nats-1:4222").token("t")),
            None
        );
        assert_eq!(
            check(
                NatsOptions::new("nats://nats-1:4222")
                    .token("t")
                    .require_tls(true)
            ),
            None
        );
        assert_eq!(check(NatsOptions::new("nats://nats-1:4222")), None);
        assert_eq!(
            check(
                NatsOptions::new("nats://nats-1:4222")
                    .token("t")
                    .allow_plaintext_credentials(true)
            ),
            None
        );
    }
}
