//! The HTTP client the `oauth2` crate calls: one request per connection
//! (tokens are refreshed about once an hour) over hyper's client half,
//! https through tokio-rustls with ring and the system's CA roots, plain
//! http only where the settings allow it (loopback test servers). Every
//! request is bounded in time and its answer in size; redirects are not
//! followed (a token request must not be sent elsewhere). It must not log
//! a request or an answer: both carry secrets.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Bytes;
use hyper::header::{HOST, HeaderValue};
use hyper_util::rt::TokioIo;
use oauth2::{HttpRequest, HttpResponse};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// The longest one request may take, connection and answer included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest answer read: token answers are a few kilobytes.
const MAX_BODY: usize = 256 * 1024;

/// Why a request got no HTTP answer.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct HttpError(String);

/// A client for the token and device endpoints.
#[derive(Clone)]
pub struct HttpClient {
    /// `None` when the system has no CA certificates: https then fails
    /// with that reason (plain http to a test server still works).
    tls: Option<TlsConnector>,
}

impl HttpClient {
    pub fn new() -> HttpClient {
        let mut roots = RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        roots.add_parsable_certificates(native.certs);
        let tls = (!roots.is_empty())
            .then(|| {
                let provider = Arc::new(rustls::crypto::ring::default_provider());
                ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .ok()
                    .map(|b| b.with_root_certificates(roots).with_no_client_auth())
            })
            .flatten()
            .map(|config| TlsConnector::from(Arc::new(config)));
        HttpClient { tls }
    }

    /// Sends `request` and returns the answer, whatever its status.
    pub async fn send(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let what = format!(
            "{} {}",
            request.method(),
            request.uri().host().unwrap_or_default()
        );
        match tokio::time::timeout(REQUEST_TIMEOUT, self.exchange(request)).await {
            Ok(result) => result.map_err(|e| HttpError(format!("{what}: {e}"))),
            Err(_) => Err(HttpError(format!(
                "{what}: no answer within {} s",
                REQUEST_TIMEOUT.as_secs()
            ))),
        }
    }

    async fn exchange(&self, mut request: HttpRequest) -> Result<HttpResponse, String> {
        let uri = request.uri().clone();
        let host = uri.host().ok_or("the URL has no host")?.to_string();
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            other => return Err(format!("unsupported scheme {other:?}")),
        };
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        // hyper's client half writes the request target as given: origin-form.
        let target = uri.path_and_query().map_or("/", |p| p.as_str());
        *request.uri_mut() = target.parse().map_err(|e| format!("bad path: {e}"))?;
        let authority = uri.authority().map_or(host.as_str(), |a| a.as_str());
        let value = HeaderValue::from_str(authority).map_err(|e| e.to_string())?;
        request.headers_mut().insert(HOST, value);

        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let tcp = TcpStream::connect((bare, port))
            .await
            .map_err(|e| format!("cannot connect to port {port}: {e}"))?;
        let _ = tcp.set_nodelay(true);
        if !https {
            return round_trip(tcp, request).await;
        }
        let connector = self
            .tls
            .as_ref()
            .ok_or("no trusted CA certificates on this system (install ca-certificates)")?;
        let name = ServerName::try_from(bare.to_string()).map_err(|e| e.to_string())?;
        let tls = connector
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS: {e}"))?;
        round_trip(tls, request).await
    }
}

/// The `oauth2` crate's client interface. The future is boxed as `Send`:
/// a closure over `&HttpClient` would leave a lifetime that spawned tasks
/// cannot prove `Send` for every instance of.
impl<'c> oauth2::AsyncHttpClient<'c> for HttpClient {
    type Error = HttpError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, HttpError>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(self.send(request))
    }
}

impl Default for HttpClient {
    fn default() -> Self {
        HttpClient::new()
    }
}

/// One request and its answer on an open connection.
async fn round_trip<S>(stream: S, request: HttpRequest) -> Result<HttpResponse, String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    // The connection task ends when the answer is read or the sender dropped.
    let driver = tokio::spawn(connection);
    let (parts, body) = request.into_parts();
    let request = hyper::Request::from_parts(parts, Full::new(Bytes::from(body)));
    let result = async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let (parts, body) = response.into_parts();
        let body = Limited::new(body, MAX_BODY)
            .collect()
            .await
            .map_err(|e| format!("reading the answer: {e}"))?
            .to_bytes();
        Ok(oauth2::http::Response::from_parts(parts, body.to_vec()))
    }
    .await;
    drop(sender);
    driver.abort();
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::TcpListener;

    #[tokio::test]
    async fn a_form_post_reaches_the_server_and_its_answer_comes_back() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut seen = Vec::new();
            let mut buf = [0u8; 1024];
            while !String::from_utf8_lossy(&seen).contains("grant_type=x") {
                let n = socket.read(&mut buf).await.unwrap();
                assert!(n > 0, "the client closed early");
                seen.extend_from_slice(&buf[..n]);
            }
            let body = r#"{"ok":true}"#;
            let answer = format!(
                "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\n\r\n{body}",
                body.len()
            );
            socket.write_all(answer.as_bytes()).await.unwrap();
            String::from_utf8(seen).unwrap()
        });
        let request = oauth2::http::Request::builder()
            .method("POST")
            .uri(format!("http://{addr}/oauth/token?x=1"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(b"grant_type=x".to_vec())
            .unwrap();
        let response = HttpClient::new().send(request).await.unwrap();
        assert_eq!(response.status(), 400);
        assert_eq!(response.body(), br#"{"ok":true}"#);
        let seen = server.await.unwrap();
        assert!(
            seen.starts_with("POST /oauth/token?x=1 HTTP/1.1\r\n"),
            "{seen}"
        );
        assert!(
            seen.to_ascii_lowercase().contains(&format!("host: {addr}")),
            "{seen}"
        );
    }

    #[tokio::test]
    async fn a_closed_port_is_an_error_that_names_the_host() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let request = oauth2::http::Request::builder()
            .uri(format!("http://{addr}/token"))
            .body(Vec::new())
            .unwrap();
        let err = HttpClient::new().send(request).await.unwrap_err();
        assert!(err.to_string().contains("127.0.0.1"), "{err}");
    }
}
