//! Attachment downloads: `Content-Disposition: attachment` with a safe
//! file name (no path, no control, bidi or other format characters: a
//! stored name may predate any cleaning at parse time), a type from a short list of harmless ones (else
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

/// A stored file name as the page may show it: control and bidi/format
/// characters removed, at most 150 characters, never empty.
pub fn display_name(filename: &str) -> String {
    let name: String = filename
        .chars()
        .filter(|c| !crate::terminal::is_unsafe(*c))
        .take(150)
        .collect();
    let name = name.trim();
    if name.is_empty() {
        "attachment".to_string()
    } else {
        name.to_string()
    }
}

/// `attachment; filename="ascii"; filename*=UTF-8''percent-encoded`
/// (RFC 6266): no path, no quotes, no control or bidi characters.
pub fn content_disposition(filename: &str) -> String {
    let cleaned: String = filename
        .chars()
        .filter(|c| !crate::terminal::is_unsafe(*c))
        .collect();
    let base = cleaned
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or_default()
        .trim()
        .trim_start_matches('.');
    let base = display_name(base);
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

    #[test]
    fn bidi_and_format_characters_are_removed_from_names() {
        let spoof = "invoice\u{202E}fdp.exe";
        let d = content_disposition(spoof);
        assert!(d.contains("filename=\"invoicefdp.exe\""), "{d}");
        assert!(d.contains("filename*=UTF-8''invoicefdp.exe"), "{d}");
        assert!(!d.contains("%E2%80%AE"), "{d}");
        assert_eq!(display_name(spoof), "invoicefdp.exe");
        let every = "a\u{200E}b\u{200F}c\u{202A}\u{202B}\u{202C}\u{202D}\u{202E}d\u{2066}\u{2067}\u{2068}\u{2069}e\u{061C}f\u{200B}\u{FEFF}\u{7}\u{1B}[31mg\u{85}.txt";
        assert_eq!(display_name(every), "abcdef[31mg.txt");
        assert!(content_disposition(every).contains("filename*=UTF-8''abcdef%5B31mg.txt"));
        assert_eq!(display_name("\u{202E}\u{2066}"), "attachment");
        assert_eq!(display_name("Größe résumé.pdf"), "Größe résumé.pdf");
        assert_eq!(
            display_name("שלום.pdf"),
            "שלום.pdf",
            "right-to-left text itself stays"
        );
        assert!(content_disposition(".\u{202E}./x/.hidden").contains("filename=\"hidden\""));
    }
}
