//! The built-in wording, embedded: every template in English, German,
//! French and Spanish (`builtin/LANG/NAME.txt|html`). Data only.

use super::{Format, TemplateName};

/// The languages with built-in wording.
pub const LANGUAGES: [&str; 4] = ["en", "de", "fr", "es"];

/// The built-in `name` in `language` and `format`, if there is one.
pub fn source(language: &str, name: TemplateName, format: Format) -> Option<&'static str> {
    let found = BUILTIN
        .iter()
        .find(|(l, n, f, _)| *l == language && *n == name.as_str() && *f == format.extension());
    found.map(|(_, _, _, source)| *source)
}

macro_rules! builtin {
    ($($lang:literal / $name:literal . $ext:literal),* $(,)?) => {
        [$(($lang, $name, $ext, include_str!(concat!("builtin/", $lang, "/", $name, ".", $ext)))),*]
    };
}

#[rustfmt::skip]
const BUILTIN: [(&str, &str, &str, &str); 56] = builtin![
    "en" / "confirmation" . "txt", "en" / "confirmation" . "html",
    "en" / "status" . "txt", "en" / "status" . "html",
    "en" / "notification" . "txt", "en" / "notification" . "html",
    "en" / "relay-footer" . "txt", "en" / "relay-footer" . "html",
    "en" / "oversize" . "txt", "en" / "oversize" . "html",
    "en" / "refused" . "txt", "en" / "refused" . "html",
    "en" / "unproven" . "txt", "en" / "unproven" . "html",
    "de" / "confirmation" . "txt", "de" / "confirmation" . "html",
    "de" / "status" . "txt", "de" / "status" . "html",
    "de" / "notification" . "txt", "de" / "notification" . "html",
    "de" / "relay-footer" . "txt", "de" / "relay-footer" . "html",
    "de" / "oversize" . "txt", "de" / "oversize" . "html",
    "de" / "refused" . "txt", "de" / "refused" . "html",
    "de" / "unproven" . "txt", "de" / "unproven" . "html",
    "fr" / "confirmation" . "txt", "fr" / "confirmation" . "html",
    "fr" / "status" . "txt", "fr" / "status" . "html",
    "fr" / "notification" . "txt", "fr" / "notification" . "html",
    "fr" / "relay-footer" . "txt", "fr" / "relay-footer" . "html",
    "fr" / "oversize" . "txt", "fr" / "oversize" . "html",
    "fr" / "refused" . "txt", "fr" / "refused" . "html",
    "fr" / "unproven" . "txt", "fr" / "unproven" . "html",
    "es" / "confirmation" . "txt", "es" / "confirmation" . "html",
    "es" / "status" . "txt", "es" / "status" . "html",
    "es" / "notification" . "txt", "es" / "notification" . "html",
    "es" / "relay-footer" . "txt", "es" / "relay-footer" . "html",
    "es" / "oversize" . "txt", "es" / "oversize" . "html",
    "es" / "refused" . "txt", "es" / "refused" . "html",
    "es" / "unproven" . "txt", "es" / "unproven" . "html",
];
