use super::*;

fn queue(address: &str) -> bool {
    let (local, domain) = address.rsplit_once('@').unwrap_or((address, ""));
    let local = local.split_once('+').map_or(local, |(base, _)| base);
    local.eq_ignore_ascii_case("help") && domain.eq_ignore_ascii_case("desk.test")
}

fn session() -> Protocol {
    Protocol::new("desk.test", 1000)
}

fn code(step: &Step) -> &str {
    match step {
        Step::Reply(text) | Step::Close(text) => &text[..3],
        Step::Data => "354",
    }
}

/// Runs `lines` through one session; the reply code of each.
fn codes(p: &mut Protocol, lines: &[&str]) -> Vec<String> {
    lines
        .iter()
        .map(|l| code(&p.command(l.as_bytes(), queue)).to_string())
        .collect()
}

#[test]
fn a_whole_transaction_with_two_recipients() {
    let mut p = session();
    let got = codes(
        &mut p,
        &[
            "LHLO mta.test\r\n",
            "MAIL FROM:<alice@customer.test> SIZE=200 BODY=8BITMIME SMTPUTF8\r\n",
            "RCPT TO:<help@desk.test>\r\n",
            "RCPT TO:<Help+billing@DESK.test>\r\n",
            "DATA\r\n",
        ],
    );
    assert_eq!(got, ["250", "250", "250", "250", "354"]);
    assert_eq!(p.end_data(), ["help@desk.test", "Help+billing@DESK.test"]);
    assert!(p.recipients().is_empty(), "the transaction ended");
    // A next transaction on the same connection.
    let got = codes(&mut p, &["MAIL FROM:<>", "RCPT TO:<help@desk.test>"]);
    assert_eq!(got, ["250", "250"]);
}

#[test]
fn the_lhlo_reply_announces_pipelining_8bitmime_smtputf8_and_the_size() {
    let Step::Reply(text) = session().command(b"LHLO mta.test", queue) else {
        panic!("a reply");
    };
    let lines: Vec<&str> = text.split("\r\n").collect();
    assert_eq!(lines.first(), Some(&"250-desk.test"));
    for ext in ["PIPELINING", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES"] {
        assert!(lines.contains(&format!("250-{ext}").as_str()), "{ext}");
    }
    assert_eq!(lines.last(), Some(&"250 SIZE 1000"));
}

#[test]
fn commands_out_of_order_get_503() {
    let mut p = session();
    assert_eq!(codes(&mut p, &["MAIL FROM:<a@b.test>"]), ["503"]);
    let got = codes(
        &mut p,
        &[
            "LHLO x",
            "RCPT TO:<help@desk.test>",
            "DATA",
            "MAIL FROM:<a@b.test>",
            "MAIL FROM:<a@b.test>",
            "DATA",
        ],
    );
    assert_eq!(got, ["250", "503", "503", "250", "503", "503"]);
}

#[test]
fn an_address_of_no_queue_is_550_and_does_not_count() {
    let mut p = session();
    let got = codes(
        &mut p,
        &[
            "LHLO x",
            "MAIL FROM:<a@b.test>",
            "RCPT TO:<sales@desk.test>",
            "RCPT TO:<help@other.test>",
            "DATA",
        ],
    );
    assert_eq!(got, ["250", "250", "550", "550", "503"]);
    let Step::Reply(text) = p.command(b"RCPT TO:<nobody@desk.test>", queue) else {
        panic!("a reply");
    };
    assert!(text.starts_with("550 5.1.1 "), "{text}");
}

#[test]
fn a_declared_size_over_the_limit_is_552_at_mail() {
    let mut p = session();
    p.command(b"LHLO x", queue);
    let Step::Reply(text) = p.command(b"MAIL FROM:<a@b.test> SIZE=1001", queue) else {
        panic!("a reply");
    };
    assert!(text.starts_with("552 5.3.4 "), "{text}");
    assert_eq!(codes(&mut p, &["RCPT TO:<help@desk.test>"]), ["503"]);
    assert_eq!(codes(&mut p, &["MAIL FROM:<a@b.test> SIZE=1000"]), ["250"]);
}

#[test]
fn unknown_or_malformed_parameters_are_refused() {
    let mut p = session();
    p.command(b"LHLO x", queue);
    let got = codes(
        &mut p,
        &[
            "MAIL FROM:<a@b.test> SIZE=lots",
            "MAIL FROM:<a@b.test> BODY=BINARYMIME",
            "MAIL FROM:<a@b.test> RET=FULL",
            "MAIL FROM:a@b.test",
            "MAIL FROM:<a b@c.test>",
            "MAIL FROM: <a@b.test>",
            "RCPT TO:<help@desk.test> NOTIFY=NEVER",
            "RCPT TO:<help>",
            "RCPT TO:<@relay.test:help@desk.test>",
        ],
    );
    assert_eq!(
        got,
        [
            "501", "501", "555", "501", "501", "250", "555", "501", "250"
        ]
    );
}

#[test]
fn rset_noop_vrfy_quit_and_smtp_greetings() {
    let mut p = session();
    let got = codes(
        &mut p,
        &[
            "EHLO x",
            "HELO x",
            "LHLO",
            "lhlo x",
            "mail from:<a@b.test>",
            "RSET",
            "RCPT TO:<help@desk.test>",
            "NOOP",
            "VRFY help",
            "BOGUS",
            "",
        ],
    );
    assert_eq!(
        got,
        [
            "500", "500", "501", "250", "250", "250", "503", "250", "252", "500", "500"
        ]
    );
    assert_eq!(
        p.command(b"QUIT\r\n", queue),
        Step::Close("221 2.0.0 Bye".into())
    );
}

#[test]
fn bare_lf_and_non_utf8_lines() {
    let mut p = session();
    assert_eq!(
        codes(&mut p, &["LHLO x\n", "MAIL FROM:<a@b.test>\n"]),
        ["250", "250"]
    );
    assert_eq!(
        code(&p.command(b"RCPT TO:<h\xffelp@desk.test>\r\n", queue)),
        "500"
    );
}

#[test]
fn recipients_are_capped_per_transaction() {
    let mut p = session();
    codes(&mut p, &["LHLO x", "MAIL FROM:<a@b.test>"]);
    for i in 0..MAX_RECIPIENTS {
        let line = format!("RCPT TO:<help+{i}@desk.test>");
        assert_eq!(code(&p.command(line.as_bytes(), queue)), "250");
    }
    assert_eq!(codes(&mut p, &["RCPT TO:<help@desk.test>"]), ["452"]);
    assert_eq!(p.recipients().len(), MAX_RECIPIENTS);
}
