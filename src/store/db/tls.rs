//! TLS to PostgreSQL: rustls with the ring provider, as IMAP and SMTP use,
//! trusting the system's CA certificates plus `database.ca_file`. The
//! URL's `sslmode` decides whether TLS is used (`prefer`, the default,
//! takes it when the server offers it; `require` insists; `disable` never);
//! when used, the server's certificate is always verified against its
//! host name. No I/O beyond reading the CA file.

pub type Tls = tokio_postgres_rustls::MakeRustlsConnect;

/// The connector every PostgreSQL connection of the store uses.
pub fn connector(ca_file: &str) -> anyhow::Result<Tls> {
    let config = crate::imap::tls_client_config(ca_file, "database.ca_file")?;
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}
