//! TLS to PostgreSQL: rustls with the ring provider, as IMAP and SMTP use,
//! trusting the system's CA certificates plus `database.ca_file`. The
//! URL's `sslmode` decides whether TLS is used (`prefer`, the default,
//! takes it when the server offers it; `require` insists; `disable` never);
//! when used, the server's certificate is always verified against its
//! host name. No I/O beyond reading the CA file.

use std::sync::Arc;

use anyhow::Context;

pub type Tls = tokio_postgres_rustls::MakeRustlsConnect;

/// The connector every PostgreSQL connection of the store uses.
pub fn connector(ca_file: &str) -> anyhow::Result<Tls> {
    let roots = crate::imap::trusted_roots(ca_file, "database.ca_file")?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("the TLS provider offers no protocol version")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}
