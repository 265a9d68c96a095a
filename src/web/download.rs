//! Attachment downloads: `Content-Disposition: attachment` with a safe
//! file name, a type from a short list of harmless ones (else
//! `application/octet-stream`), a sandboxing policy and no caching. It
//! must never serve an attachment as a page of ours.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use crate::store::AttachmentFile;

/// An attachment as a download: `Content-Disposition: attachment`, a type
/// from a short list of harmless ones (else `application/octet-stream`),
/// and a sandbox in case a browser renders it anyway.
pub fn download(file: AttachmentFile) -> Response {
    let disposition = content_disposition(&file.filename);
    let media_type = safe_media_type(&file.media_type);
    let mut response = file.bytes.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(media_type));
    headers.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_str(&disposition)
            .unwrap_or_else(|_| HeaderValue::from_static("attachment")),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; sandbox"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    response
}

/// The declared type if it is on the harmless list, else octet-stream.
pub fn safe_media_type(declared: &str) -> &'static str {
    let essence = declared
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    const HARMLESS: [&str; 8] = [
        "application/pdf",
        "application/zip",
        "image/gif",
        "image/jpeg",
        "image/png",
        "image/webp",
        "text/csv",
        "text/plain",
    ];
    HARMLESS
        .into_iter()
        .find(|t| *t == essence)
        .unwrap_or("application/octet-stream")
}

/// `attachment; filename="ascii"; filename*=UTF-8''percent-encoded`
/// (RFC 6266): no path, no quotes, no control characters.
pub fn content_disposition(filename: &str) -> String {
    let base = filename
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or_default()
        .trim()
        .trim_start_matches('.');
    let base: String = base.chars().filter(|c| !c.is_control()).take(150).collect();
    let base = if base.is_empty() {
        "attachment".to_string()
    } else {
        base
    };
    let ascii: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || " .-_()+,".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut encoded = String::new();
    for byte in base.bytes() {
        let c = byte as char;
        if c.is_ascii_alphanumeric() || "!#$&+-.^_`|~".contains(c) {
            encoded.push(c);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_harmless_types_pass() {
        assert_eq!(safe_media_type("image/PNG; name=x"), "image/png");
        assert_eq!(safe_media_type("text/html"), "application/octet-stream");
        assert_eq!(safe_media_type("image/svg+xml"), "application/octet-stream");
        assert_eq!(safe_media_type(""), "application/octet-stream");
    }

    #[test]
    fn download_names_lose_paths_quotes_and_markup() {
        let d = content_disposition("../../etc/<b>\"pass\"</b>.html");
        assert!(d.starts_with("attachment; filename=\""), "{d}");
        let ascii = d.split('"').nth(1).unwrap();
        assert!(!ascii.contains(['<', '>', '"', '/', '\\']), "{ascii}");
        assert!(d.contains("filename*=UTF-8''"), "{d}");
        assert!(HeaderValue::from_str(&d).is_ok());
        let d = content_disposition("Größe résumé.pdf");
        assert!(d.contains("Gr%C3%B6%C3%9Fe%20r%C3%A9sum%C3%A9.pdf"), "{d}");
        assert!(content_disposition("").contains("filename=\"attachment\""));
        assert!(content_disposition("\r\n").contains("filename=\"attachment\""));
    }
}
