//! The token source against a scripted token endpoint on 127.0.0.1.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

use super::*;
use crate::settings::Secret;

/// What the fake endpoint answers next.
#[derive(Clone)]
enum Answer {
    /// A token valid this many seconds, with this refresh token (if any).
    Token {
        seconds: u64,
        rotate: Option<&'static str>,
    },
    /// An OAuth2 error (`invalid_grant`, …) with HTTP 400.
    Error(&'static str),
}

struct Endpoint {
    url: String,
    answer: Arc<Mutex<Answer>>,
    calls: Arc<AtomicUsize>,
    /// The form bodies received.
    bodies: Arc<Mutex<Vec<String>>>,
}

impl Endpoint {
    async fn start(answer: Answer) -> Endpoint {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/token", listener.local_addr().unwrap());
        let answer = Arc::new(Mutex::new(answer));
        let calls = Arc::new(AtomicUsize::new(0));
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let (a, c, b) = (answer.clone(), calls.clone(), bodies.clone());
        tokio::spawn(async move {
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                let body = read_request(&mut socket).await;
                let n = c.fetch_add(1, Ordering::SeqCst) + 1;
                b.lock().unwrap().push(body);
                let (status, json) = match a.lock().unwrap().clone() {
                    Answer::Token { seconds, rotate } => {
                        let rt = rotate.map(|r| format!(r#","refresh_token":"{r}""#));
                        let json = format!(
                            r#"{{"access_token":"at-{n}","token_type":"Bearer","expires_in":{seconds}{}}}"#,
                            rt.unwrap_or_default()
                        );
                        ("200 OK", json)
                    }
                    Answer::Error(code) => (
                        "400 Bad Request",
                        format!(r#"{{"error":"{code}","error_description":"said no"}}"#),
                    ),
                };
                let reply = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                     Connection: close\r\n\r\n{json}",
                    json.len()
                );
                let _ = socket.write_all(reply.as_bytes()).await;
            }
        });
        Endpoint {
            url,
            answer,
            calls,
            bodies,
        }
    }

    fn set(&self, answer: Answer) {
        *self.answer.lock().unwrap() = answer;
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

/// The form body of one HTTP request (headers skipped).
async fn read_request(socket: &mut tokio::net::TcpStream) -> String {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&seen).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(str::to_string)
                })
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if body.len() >= length {
                return body.to_string();
            }
        }
        let n = socket.read(&mut buf).await.unwrap();
        if n == 0 {
            return String::new();
        }
        seen.extend_from_slice(&buf[..n]);
    }
}

fn settings(url: &str, file: &std::path::Path) -> OAuthSettings {
    OAuthSettings {
        provider: "custom".to_string(),
        tenant: String::new(),
        client_id: "postdesk-test".to_string(),
        client_secret: Secret::default(),
        token_url: url.to_string(),
        device_url: url.replace("/token", "/device"),
        scopes: vec!["mail".to_string()],
        refresh_token_file: file.display().to_string(),
    }
}

async fn source(endpoint: &Endpoint) -> (TokenSource, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("refresh");
    std::fs::write(&file, "rt-0\n").unwrap();
    let source = TokenSource::new(&settings(&endpoint.url, &file), "support").unwrap();
    (source, dir)
}

#[tokio::test]
async fn a_token_is_cached_until_four_fifths_of_its_life() {
    let endpoint = Endpoint::start(Answer::Token {
        seconds: 2,
        rotate: None,
    })
    .await;
    let (source, _dir) = source(&endpoint).await;
    let first = source.access_token().await.unwrap();
    assert_eq!(first.secret(), "at-1");
    assert_eq!(source.access_token().await.unwrap().secret(), "at-1");
    assert_eq!(endpoint.calls(), 1, "the cached token is used");
    let body = endpoint.bodies.lock().unwrap()[0].clone();
    assert!(body.contains("grant_type=refresh_token"), "{body}");
    assert!(body.contains("refresh_token=rt-0"), "{body}");
    assert!(body.contains("client_id=postdesk-test"), "{body}");
    assert!(body.contains("scope=mail"), "{body}");
    // 80% of 2 s is 1.6 s.
    tokio::time::sleep(Duration::from_millis(1700)).await;
    let second = source.access_token().await.unwrap();
    assert_eq!(second.secret(), "at-2");
    assert!(second.generation() > first.generation());
    assert!(source.health().failing.is_none());
}

#[tokio::test]
async fn a_rotated_refresh_token_is_written_back_and_used_next() {
    let endpoint = Endpoint::start(Answer::Token {
        seconds: 3600,
        rotate: Some("rt-1"),
    })
    .await;
    let (source, dir) = source(&endpoint).await;
    let token = source.access_token().await.unwrap();
    let file = dir.path().join("refresh");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "rt-1\n");
    source.invalidate(&token).await;
    source.access_token().await.unwrap();
    let bodies = endpoint.bodies.lock().unwrap().clone();
    assert!(bodies[1].contains("refresh_token=rt-1"), "{}", bodies[1]);
}

#[tokio::test]
async fn invalidating_an_old_token_does_not_refresh_again() {
    let endpoint = Endpoint::start(Answer::Token {
        seconds: 3600,
        rotate: None,
    })
    .await;
    let (source, _dir) = source(&endpoint).await;
    let old = source.access_token().await.unwrap();
    source.invalidate(&old).await;
    let new = source.access_token().await.unwrap();
    assert_eq!(endpoint.calls(), 2);
    // IMAP and SMTP both refused `old`: the second report changes nothing.
    source.invalidate(&old).await;
    assert_eq!(source.access_token().await.unwrap().secret(), new.secret());
    assert_eq!(endpoint.calls(), 2);
}

#[tokio::test]
async fn a_revoked_token_is_reported_and_not_hammered_and_a_new_file_recovers() {
    let endpoint = Endpoint::start(Answer::Error("invalid_grant")).await;
    let (source, dir) = source(&endpoint).await;
    let err = source.access_token().await.unwrap_err();
    assert!(matches!(err, OAuthError::Revoked { .. }), "{err}");
    assert!(
        err.to_string().contains("postdesk oauth authorize"),
        "{err}"
    );
    let health = source.health().failing.unwrap();
    assert_eq!((health.code, health.needs_action), ("revoked", true));
    // Many callers during the pause: the endpoint is not asked again.
    for _ in 0..20 {
        assert!(source.access_token().await.is_err());
    }
    assert_eq!(endpoint.calls(), 1);
    // The operator stores a new refresh token: the next call uses it.
    endpoint.set(Answer::Token {
        seconds: 3600,
        rotate: None,
    });
    std::fs::write(dir.path().join("refresh"), "rt-new\n").unwrap();
    assert_eq!(source.access_token().await.unwrap().secret(), "at-2");
    assert!(endpoint.bodies.lock().unwrap()[1].contains("refresh_token=rt-new"));
    assert!(source.health().failing.is_none());
}

#[tokio::test]
async fn an_expired_token_is_not_handed_out_after_a_failed_refresh() {
    let endpoint = Endpoint::start(Answer::Token {
        seconds: 5,
        rotate: None,
    })
    .await;
    let (source, _dir) = source(&endpoint).await;
    source.access_token().await.unwrap();
    endpoint.set(Answer::Error("temporarily_unavailable"));
    // Due for refresh at 4 s, usable until 4 s (5 s less one): at 4.1 s the
    // refresh fails and there is nothing left to hand out.
    tokio::time::sleep(Duration::from_millis(4100)).await;
    let err = source.access_token().await.unwrap_err();
    assert!(matches!(err, OAuthError::Unreachable(_)), "{err}");
    assert!(!source.health().failing.unwrap().needs_action);
}

#[tokio::test]
async fn a_refresh_failure_keeps_a_still_valid_token_in_use() {
    let endpoint = Endpoint::start(Answer::Token {
        seconds: 10,
        rotate: None,
    })
    .await;
    let (source, _dir) = source(&endpoint).await;
    let token = source.access_token().await.unwrap();
    endpoint.set(Answer::Error("server_error"));
    tokio::time::sleep(Duration::from_millis(8100)).await;
    // Due (8 s) but usable until 9 s: the old token still works.
    assert_eq!(
        source.access_token().await.unwrap().secret(),
        token.secret()
    );
    assert_eq!(source.health().failing.unwrap().code, "unreachable");
}

#[tokio::test]
async fn no_refresh_token_file_names_the_command_to_run() {
    let endpoint = Endpoint::start(Answer::Token {
        seconds: 60,
        rotate: None,
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("missing");
    let source = TokenSource::new(&settings(&endpoint.url, &file), "support").unwrap();
    let err = source.access_token().await.unwrap_err();
    assert_eq!(err.code(), "no_refresh_token");
    assert!(err.to_string().contains("oauth authorize"), "{err}");
    assert_eq!(endpoint.calls(), 0);
    std::fs::write(&file, "rt-9").unwrap();
    assert!(
        source.access_token().await.is_ok(),
        "a stored token is picked up"
    );
}

#[test]
fn a_token_never_shows_in_debug_output() {
    let token = AccessToken {
        secret: "very-secret".to_string(),
        generation: 3,
    };
    assert_eq!(format!("{token:?}"), "AccessToken(#3, ***)");
}

#[tokio::test]
async fn the_refresher_keeps_a_token_fresh_and_notices_a_revocation_unasked() {
    let endpoint = Endpoint::start(Answer::Token {
        seconds: 2,
        rotate: None,
    })
    .await;
    let (source, _dir) = source(&endpoint).await;
    let source = Arc::new(source);
    crate::oauth::refresher::spawn(&source);
    // At start, then 80% into each 2-s token: nobody asked for one.
    tokio::time::sleep(Duration::from_millis(1_900)).await;
    assert_eq!(endpoint.calls(), 2);
    endpoint.set(Answer::Error("invalid_grant"));
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    let failing = source.health().failing.expect("noticed without a login");
    assert_eq!(failing.code, "revoked");
    let calls = endpoint.calls();
    // The refresher looks every few seconds; the endpoint waits its pause.
    tokio::time::sleep(Duration::from_millis(5_500)).await;
    assert_eq!(
        endpoint.calls(),
        calls,
        "not asked again within the 10-s pause"
    );
    // Dropping the source ends the refresher.
    drop(source);
}
