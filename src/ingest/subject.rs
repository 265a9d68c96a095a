//! Subject: finding the ticket tag in a subject and cleaning reply and
//! forward prefixes. Pure. (Temporary minimal version; being replaced.)

pub fn find_tag(subject: &str, tag: &str) -> Option<u64> {
    let lower = subject.to_lowercase();
    let needle = format!("[{} #", tag.to_lowercase());
    let start = lower.find(&needle)? + needle.len();
    let digits: String = lower[start..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

pub fn clean_subject(subject: &str, tag: &str) -> String {
    let mut s = subject.trim().to_string();
    loop {
        let lower = s.to_lowercase();
        if let Some(rest) = ["re:", "fwd:", "fw:", "aw:"].iter().find_map(|p| {
            lower
                .starts_with(p)
                .then(|| s[p.len()..].trim().to_string())
        }) {
            s = rest;
            continue;
        }
        if let Some(n) = find_tag(&s, tag) {
            let t = format!("[{tag} #{n}]");
            if let Some(pos) = s.to_lowercase().find(&t.to_lowercase()) {
                s = format!("{}{}", &s[..pos], &s[pos + t.len()..])
                    .trim()
                    .to_string();
                continue;
            }
        }
        break;
    }
    if s.is_empty() {
        "(no subject)".to_string()
    } else {
        s
    }
}

pub fn tagged_subject(subject: &str, tag: &str, number: u64) -> String {
    format!("[{tag} #{number}] {}", clean_subject(subject, tag))
}
