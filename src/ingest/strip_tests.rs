//! Tests for `strip`: one group per rule family, robustness over hostile
//! input, the HTML containers, and the labelled corpus.

use super::*;

fn new_text(body: &str) -> String {
    strip_reply(body).new_text
}

const CORPUS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/corpus/reply-bodies/trimmer"
);

/// Labelled cases whose new text must match exactly (after whitespace
/// normalisation): all 64 did when this was written, so any regression fails.
const CORPUS_MIN_PASS: usize = 64;

fn squash(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Reads the labelled corpus in place (never copied into the repo) and prints
/// a per-case table and the exact-match rate.
#[test]
fn trimmer_corpus_scores_100_percent() {
    let dir = std::path::Path::new(CORPUS);
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| {
        panic!(
            "labelled corpus missing at {} ({e}); expected in ../shared next to the repo",
            dir.display()
        )
    });
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|n| n.strip_suffix(".body.txt").map(str::to_string))
        .collect();
    names.sort();
    assert!(
        !names.is_empty(),
        "no *.body.txt cases in {}",
        dir.display()
    );
    let mut passed = 0;
    for name in &names {
        let read = |suffix: &str| {
            let path = dir.join(format!("{name}.{suffix}"));
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        };
        let got = squash(&new_text(&read("body.txt")));
        let expected = squash(&read("expected_trimmed.txt"));
        if got == expected {
            passed += 1;
            println!("pass  {name}");
        } else {
            let cut = |s: &str| s.chars().take(160).collect::<String>();
            println!(
                "FAIL  {name}\n      got:      {}\n      expected: {}",
                cut(&got),
                cut(&expected)
            );
        }
    }
    let total = names.len();
    println!(
        "trimmer corpus: {passed}/{total} exact ({:.1}%)",
        100.0 * passed as f64 / total as f64
    );
    assert!(
        passed >= CORPUS_MIN_PASS,
        "trimmer corpus: {passed}/{total} exact, need {CORPUS_MIN_PASS}"
    );
}

/// `(body, expected new text)` pairs, checked after whitespace normalisation.
fn check(cases: &[(&str, &str)]) {
    for (body, expected) in cases {
        assert_eq!(squash(&new_text(body)), squash(expected), "body:\n{body}");
    }
}

#[test]
fn attributions_in_many_languages() {
    check(&[
        (
            "Works now.\n\nOn Tue, 3 Mar 2020 at 09:12, Ana <ana@example.org> wrote:\n> Does it?",
            "Works now.",
        ),
        (
            "Danke!\n\nAm 03.03.2020 um 09:12 schrieb Ana Beispiel <ana@example.org>:\n> Geht es?",
            "Danke!",
        ),
        (
            "Merci.\n\nLe mar. 3 mars 2020 à 09:12, Ana <ana@example.org> a écrit :\n> Ça marche ?",
            "Merci.",
        ),
        (
            "Gracias.\n\nEl mar., 3 mar. 2020 a las 9:12, Ana (<ana@example.org>) escribió:\n> ¿Funciona?",
            "Gracias.",
        ),
        (
            "Grazie.\n\nIl giorno mar 3 mar 2020 alle ore 09:12 Ana <ana@example.org> ha scritto:\n> Va?",
            "Grazie.",
        ),
        (
            "Bedankt.\n\nOp di 3 mrt. 2020 om 09:12 schreef Ana <ana@example.org>:\n> Werkt het?",
            "Bedankt.",
        ),
        (
            "Bedankt.\n\nOp 3 mrt. 2020 om 09:12 heeft Ana <ana@example.org> het volgende geschreven:\n> Echt?",
            "Bedankt.",
        ),
        (
            "Obrigado.\n\nEm ter., 3 de mar. de 2020 às 09:12, Ana <ana@example.org> escreveu:\n> Funciona?",
            "Obrigado.",
        ),
        (
            "Dzięki.\n\nW dniu 3.03.2020 o 09:12, Ana <ana@example.org> pisze:\n> Działa?",
            "Dzięki.",
        ),
        (
            "Спасибо.\n\n3 марта 2020 г., в 9:12, Анна <ana@example.org> написал(а):\n> Работает?",
            "Спасибо.",
        ),
        (
            "Tack.\n\nDen 3 mars 2020 kl. 09:12 skrev Ana <ana@example.org>:\n> Fungerar det?",
            "Tack.",
        ),
        (
            "Takk.\n\ntir. 3. mar. 2020 kl. 09:12 skrev Ana <ana@example.org>:\n> Virker det?",
            "Takk.",
        ),
        (
            "Kiitos.\n\nAna <ana@example.org> kirjoitti 3.3.2020 kello 9.12:\n> Toimiiko?",
            "Kiitos.",
        ),
        (
            "ありがとう。\n\n2020/03/03 9:12、Ana <ana@example.org>のメッセージ:\n> 動きますか？",
            "ありがとう。",
        ),
        (
            "ありがとう。\n\nAna さんは書きました:\n> 動きますか？",
            "ありがとう。",
        ),
        (
            "谢谢。\n\n在 2020年3月3日，上午9:12，Ana <ana@example.org> 写道：\n> 可以吗？",
            "谢谢。",
        ),
        (
            "Fine.\n\nAt 3/3/2020 09:12 AM, you wrote:\n>Is it?",
            "Fine.",
        ),
        ("Fine.\n\nAna <ana@example.org> wrote:\n\nIs it?", "Fine."),
    ]);
}

#[test]
fn attributions_wrapped_over_lines() {
    check(&[
        (
            "Done.\n\nOn Tue, 3 Mar 2020 at 09:12, Ana Example <\nana@example.org> wrote:\n\n> Is it?",
            "Done.",
        ),
        (
            "Erledigt.\n\nAna Beispiel <ana@example.org> schrieb am Di., 3.\nMärz 2020 um 09:12 Uhr:\n\n> Fertig?",
            "Erledigt.",
        ),
        (
            "Fait.\nLe 3 mars 2020 09:12, \"Ana\"\n<ana@example.org>\na écrit :\n\n> Fini ?",
            "Fait.",
        ),
        (
            "Klaar.\nOp 3 mrt. 2020 09:12 schreef \"Ana\" <ana@example.org> het\nvolgende geschreven:\n\n> Af?",
            "Klaar.",
        ),
        (
            "Готово.\n\n3 мар. 2020 г. 9:12 пользователь \"Анна\" <\nana@example.org> написал:\n\n> Всё?",
            "Готово.",
        ),
    ]);
}

#[test]
fn sentences_that_only_look_like_attributions_are_kept() {
    check(&[
        (
            "On Monday I wrote the report.\nIt is attached.",
            "On Monday I wrote the report.\nIt is attached.",
        ),
        (
            "On this day\n\nI wrote something\n\nwhich was very interesting.",
            "On this day I wrote something which was very interesting.",
        ),
        (
            "My colleague wrote:\nplease restart the router",
            "My colleague wrote:\nplease restart the router",
        ),
    ]);
}

#[test]
fn outlook_header_blocks_in_many_languages() {
    check(&[
        (
            "Yes.\n\nFrom: Ana <ana@example.org>\nSent: Tuesday, March 3, 2020 9:12 AM\nTo: Support\nSubject: Printer\n\nOld",
            "Yes.",
        ),
        (
            "Yes.\n\n*From:* Ana\n*Sent:* 2020-03-03\n*To:* Support\n*Subject:* Printer\n\nOld",
            "Yes.",
        ),
        (
            "Ja.\n\nVon: Ana\nGesendet: Dienstag, 3. März 2020 09:12\nAn: Support\nBetreff: Drucker\n\nAlt",
            "Ja.",
        ),
        (
            "Oui.\n\nDe : Ana\nEnvoyé : mardi 3 mars 2020 09:12\nÀ : Support\nObjet : Imprimante\n\nVieux",
            "Oui.",
        ),
        (
            "Sí.\n\nDe: Ana\nEnviado: martes, 3 de marzo de 2020 9:12\nPara: Soporte\nAsunto: Impresora\n\nViejo",
            "Sí.",
        ),
        (
            "Sì.\n\nDa: Ana\nInviato: martedì 3 marzo 2020 09:12\nA: Supporto\nOggetto: Stampante\n\nVecchio",
            "Sì.",
        ),
        (
            "Ja.\n\nVan: Ana\nVerzonden: dinsdag 3 maart 2020 09:12\nAan: Support\nOnderwerp: Printer\n\nOud",
            "Ja.",
        ),
        (
            "Да.\n\nОт: Анна\nОтправлено: 3 марта 2020 г. 9:12\nКому: Поддержка\nТема: Принтер\n\nСтарое",
            "Да.",
        ),
        (
            "Tak.\n\nOd: Ana\nWysłano: wtorek, 3 marca 2020 09:12\nDo: Wsparcie\nTemat: Drukarka\n\nStare",
            "Tak.",
        ),
        (
            "Ja.\n\nFrån: Ana\nSkickat: den 3 mars 2020 09:12\nTill: Support\nÄmne: Skrivare\n\nGammalt",
            "Ja.",
        ),
        (
            "Ja.\n\nFra: Ana\nSendt: 3. marts 2020 09:12\nTil: Support\nEmne: Printer\n\nGammel",
            "Ja.",
        ),
        (
            "Kyllä.\n\nLähettäjä: Ana\nLähetetty: 3. maaliskuuta 2020 9.12\nVastaanottaja: Tuki\nAihe: Tulostin\n\nVanha",
            "Kyllä.",
        ),
    ]);
}

#[test]
fn original_message_markers_and_separator_lines() {
    check(&[
        (
            "See below.\n\n-----Original Message-----\nFrom: Ana\nold text",
            "See below.",
        ),
        (
            "Siehe unten.\n\n-----Ursprüngliche Nachricht-----\nold text",
            "Siehe unten.",
        ),
        (
            "Voir ci-dessous.\n\n-------- Message d'origine --------\nold text",
            "Voir ci-dessous.",
        ),
        (
            "Ver abajo.\n\n*-----Mensaje original-----*\nold text",
            "Ver abajo.",
        ),
        (
            "Zie onder.\n\n________________________________\nVan: Ana\nold text",
            "Zie onder.",
        ),
    ]);
}

#[test]
fn quote_blocks() {
    check(&[
        (
            "Answer on top.\n\n> the question\n> more question",
            "Answer on top.",
        ),
        (
            "> a quote without attribution\n\nand the answer",
            "> a quote without attribution\n\nand the answer",
        ),
        ("> only a quote", "> only a quote"),
        (
            "Hi,\nOn Tue, 3 Mar 2020, Ana <ana@example.org> wrote:\n> first question?\n\nfirst answer\n\n> second question?\n\nsecond answer\n\n> closing words",
            "Hi,\n> first question?\n\nfirst answer\n\n> second question?\n\nsecond answer",
        ),
        (
            "On Tue, 3 Mar 2020, Ana <ana@example.org> wrote:\n> the question\n\nthe answer at the bottom",
            "the answer at the bottom",
        ),
        (
            "Top.\n\nOn Tue, 3 Mar 2020, Ana wrote:\n> a long quoted line that a mail client wrapped at its\nwidth, without a marker\n> and went on",
            "Top.",
        ),
        (
            "See inline.\n\nOn Tue, 3 Mar 2020, Ana wrote:\n> Which version?\n4.2\n> And the model?\nX200",
            "See inline.\n> Which version?\n4.2\n> And the model?\nX200",
        ),
    ]);
}

#[test]
fn signature_delimiters() {
    check(&[
        ("Thanks\n\n-- \nAna Example\nHelpdesk", "Thanks"),
        ("Thanks\n--\nAna", "Thanks"),
        ("Thanks\n\n___________\nAna Example | Example Ltd", "Thanks"),
        (
            "Fenced code is kept:\n```\n--\n####\n```\nend",
            "Fenced code is kept:\n```\n--\n####\n```\nend",
        ),
    ]);
}

#[test]
fn mobile_signatures_in_many_languages() {
    for sig in [
        "Sent from my iPhone",
        "Sent from Mail for Windows",
        "Get Outlook for iOS<https://aka.ms/o0ukef>",
        "Envoyé de mon iPhone",
        "Von meinem iPhone gesendet",
        "Enviado desde mi iPhone",
        "Enviado do meu iPhone",
        "Inviato da iPhone",
        "Verzonden vanaf mijn iPhone",
        "Wysłane z mojego iPhone'a",
        "Отправлено с iPhone",
        "Skickat från min iPhone",
        "Sendt fra min iPhone",
        "Lähetetty iPhonesta",
        "iPhoneから送信",
        "发自我的iPhone",
    ] {
        let body = format!("The printer works again.\n\n{sig}");
        assert_eq!(
            new_text(&body),
            "The printer works again.",
            "signature {sig:?}"
        );
    }
    // Only trailing ones go: in the middle they are text.
    let body = "Sent from my iPhone, the photo shows the error.\nPlease look.";
    assert_eq!(new_text(body), body);
}

#[test]
fn forwarded_messages() {
    check(&[
        (
            "---------- Forwarded message ---------\nFrom: Ana <ana@example.org>\nDate: Tue, Mar 3, 2020 at 9:12 AM\nSubject: Broken\nTo: <bob@example.org>\n\n\nThe printer is broken.",
            "The printer is broken.",
        ),
        (
            "Please look at this.\n\n---------- Weitergeleitete Nachricht ---------\nVon: Ana\nDatum: 3.3.2020\nBetreff: x\nAn: y\n\nold",
            "Please look at this.",
        ),
        (
            "FYI\n\nBegin forwarded message:\n\nFrom: Ana\nSubject: x\nDate: 3 March 2020\nTo: y\n\nold",
            "FYI",
        ),
    ]);
}

#[test]
fn quoted_part_holds_what_was_cut() {
    let s =
        strip_reply("Yes.\r\n\r\nOn Tue, 3 Mar 2020, Ana <ana@example.org> wrote:\r\n> Is it?\r\n");
    assert_eq!(s.new_text, "Yes.");
    assert_eq!(
        s.quoted,
        "On Tue, 3 Mar 2020, Ana <ana@example.org> wrote:\n> Is it?"
    );
}

#[test]
fn never_panics_on_tricky_input() {
    let huge = "é".repeat(300_000);
    let many = "> On Tue, 3 Mar 2020, Ana <a@b.c> wrote:\n".repeat(2_000);
    let headers = "To: a\n".repeat(5_000);
    let tricky = [
        String::new(),
        "\n\n\n".to_string(),
        "\r\n\r".to_string(),
        "\0".to_string(),
        "a\0b\n> \0\nOn \0 1 wrote:".to_string(),
        ">".to_string(),
        ">>>>>>>>>>\n> >\n>".to_string(),
        "--".to_string(),
        "```".to_string(),
        "```\nunclosed fence\nOn 1 Jan 2020, Ana wrote:\n> q".to_string(),
        "ᐧ\nᐧ".to_string(),
        "日本語のテキスト\n2020年3月3日 9:12 Ana <ana@example.org>:\n> 引用".to_string(),
        "On 🎉 1 wrote:\n> 🎉".to_string(),
        format!("{huge}\nOn 1 Jan 2020, Ana wrote:\n> {huge}"),
        format!("x\n{huge}:"),
        many,
        headers,
        "Émoji 😀\n\n-----Original Message-----\nFrom: 😀".to_string(),
        "\u{FEFF}\u{200B}\n\u{00A0}text\u{00A0}".to_string(),
    ];
    for body in &tricky {
        let s = strip_reply(body);
        assert!(s.new_text.len() <= body.len() + 1);
        let _ = remove_html_quotes(body);
    }
    // Every prefix of a multi-byte sample, cut at each character boundary.
    let sample = "Grüße 😀\r\n\r\nAm 3.3.2020 schrieb Ана <a@b.c>:\r\n> 引用 ᐧ\r\n-- \r\nÅsa";
    for (i, _) in sample.char_indices() {
        let _ = strip_reply(&sample[..i]);
        let _ = remove_html_quotes(&sample[..i]);
    }
    assert_eq!(new_text(""), "");
    assert_eq!(new_text("\r\n\r\n"), "");
    assert_eq!(new_text("a\r\nb\rc"), "a\nb\nc");
}

#[test]
fn lotus_notes_and_gmx_quote_containers() {
    let notes = r#"<p>Done.</p><div class="domino-section"><div class="domino-section-head">History</div><div class="domino-section-body">old</div></div>"#;
    assert_eq!(remove_html_quotes(notes).as_deref(), Some("<p>Done.</p>"));
    let gmx = r#"<div>Danke</div><div name="quote" style="margin:10px"><div>alt</div></div>"#;
    assert_eq!(remove_html_quotes(gmx).as_deref(), Some("<div>Danke</div>"));
    assert_eq!(remove_html_quotes(r#"<div name="quotes">x</div>"#), None);
}

#[test]
fn html_quote_containers() {
    let gmail = r#"<div dir="ltr">Thanks!</div><br><div class="gmail_quote"><div class="gmail_attr">On Tue, Ana wrote:<br></div><blockquote class="gmail_quote"><div>old</div></blockquote></div>"#;
    assert_eq!(
        remove_html_quotes(gmail).as_deref(),
        Some(r#"<div dir="ltr">Thanks!</div><br>"#)
    );
    let apple = r#"<div>Ok</div><div><br><blockquote type="cite"><div>On Tue, Ana wrote:</div><div><div>nested</div></div></blockquote></div>"#;
    assert_eq!(
        remove_html_quotes(apple).as_deref(),
        Some("<div>Ok</div><div><br></div>")
    );
    let outlook = r#"<p>Yes</p><hr style="display:inline-block"><div id="divRplyFwdMsg" dir="ltr"><b>From:</b> Ana</div><div>old</div>"#;
    assert_eq!(remove_html_quotes(outlook).as_deref(), Some("<p>Yes</p>"));
    let outlook2 = "<p>Yes</p><div id=appendonsend></div><div>old</div>";
    assert_eq!(remove_html_quotes(outlook2).as_deref(), Some("<p>Yes</p>"));
    let thunderbird = r#"<p>Fine</p><div class="moz-cite-prefix">On 3/3/20 Ana wrote:<br></div><blockquote type='cite'>old</blockquote>"#;
    assert_eq!(
        remove_html_quotes(thunderbird).as_deref(),
        Some("<p>Fine</p>")
    );
    let yahoo =
        r#"<div>Hi</div><div id="yahoo_quoted_123" class="yahoo_quoted"><div>old</div></div>"#;
    assert_eq!(remove_html_quotes(yahoo).as_deref(), Some("<div>Hi</div>"));
    assert_eq!(
        remove_html_quotes("<div><blockquote>a plain quote</blockquote></div>"),
        None
    );
    assert_eq!(remove_html_quotes("<p>nothing quoted</p>"), None);
    // Broken HTML: an unclosed container runs to the end.
    assert_eq!(
        remove_html_quotes("<p>x</p><DIV CLASS=gmail_quote><div>old").as_deref(),
        Some("<p>x</p>")
    );
    for broken in [
        "<",
        "<div",
        "<div class=\"gmail_quote\"",
        "</div></blockquote>",
        "<blockquote type=cite/>é",
        "<div id=\"divRplyFwdMsg\"",
    ] {
        let _ = remove_html_quotes(broken);
    }
}
