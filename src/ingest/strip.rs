//! Strip: separates new text from quoted history. (Temporary minimal version; being replaced.)

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stripped {
    pub new_text: String,
    pub quoted: String,
}

pub fn strip_reply(body: &str) -> Stripped {
    let mut new_text = Vec::new();
    let mut quoted = Vec::new();
    for line in body.lines() {
        if line.starts_with('>') {
            quoted.push(line)
        } else {
            new_text.push(line)
        }
    }
    Stripped {
        new_text: new_text.join("\n").trim().to_string(),
        quoted: quoted.join("\n"),
    }
}

pub fn remove_html_quotes(_html: &str) -> Option<String> {
    None
}
