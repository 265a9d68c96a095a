#!/usr/bin/env python3
"""Small mail client for the mailstack (scripts/mailstack): send, wait-and-read, selftest.

Connection details come from the MAILSTACK_* variables that
`eval "$(scripts/mailstack env DIR)"` exports. Standard library only.

  mailtool.py send --from customer1@example.test --to tickets@example.test \
      --subject "Printer on fire" --body "Help!" [--via smtp|submission] [--header K:V]
  mailtool.py wait --user customer1@example.test --subject "[Ticket #" \
      [--timeout 30] [--via imaps|imap] [--show subject|link|headers|body|all]
  mailtool.py selftest      # SMTP + submission in, IMAPS + IMAP/STARTTLS out, IDLE push
"""

import argparse
import email
import email.policy
import email.utils
import imaplib
import os
import re
import select
import smtplib
import socket
import ssl
import sys
import time
import uuid
from email.message import EmailMessage


def env(name, default=None):
    value = os.environ.get(name, default)
    if value is None:
        sys.exit(f"mailtool: {name} is not set; run: eval \"$(scripts/mailstack env DIR)\"")
    return value


def tls_context():
    return ssl.create_default_context(cafile=env("MAILSTACK_CA"))


def host():
    return env("MAILSTACK_HOST", "127.0.0.1")


def password():
    return env("MAILSTACK_PASSWORD", "secret")


# ------------------------------------------------------------------ SMTP

def build_message(sender, recipients, subject, body, headers=()):
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = ", ".join(recipients)
    msg["Subject"] = subject
    msg["Date"] = email.utils.formatdate(localtime=True)
    msg["Message-ID"] = email.utils.make_msgid(domain="example.test")
    for name, value in headers:
        msg[name] = value
    msg.set_content(body)
    return msg


def send(msg, via="smtp", user=None, timeout=30):
    """Send over plain SMTP (no auth) or submission (STARTTLS + AUTH as `user`)."""
    if via == "submission":
        with smtplib.SMTP(host(), int(env("MAILSTACK_SUBMISSION_PORT")), timeout=timeout) as s:
            s.starttls(context=tls_context())
            s.login(user or email.utils.parseaddr(msg["From"])[1], password())
            s.send_message(msg)
    else:
        with smtplib.SMTP(host(), int(env("MAILSTACK_SMTP_PORT")), timeout=timeout) as s:
            s.send_message(msg)
    return msg["Message-ID"]


# ------------------------------------------------------------------ IMAP

def imap_connect(user, via="imaps", timeout=30):
    if via == "imaps":
        conn = imaplib.IMAP4_SSL(host(), int(env("MAILSTACK_IMAPS_PORT")),
                                 ssl_context=tls_context(), timeout=timeout)
    else:
        conn = imaplib.IMAP4(host(), int(env("MAILSTACK_IMAP_PORT")), timeout=timeout)
        if via == "imap":  # plain IMAP upgraded with STARTTLS
            conn.starttls(ssl_context=tls_context())
    conn.login(user, password())
    return conn


def fetch_matching(conn, subject_substr):
    """Messages in the selected mailbox whose Subject contains subject_substr."""
    typ, data = conn.uid("SEARCH", None, "ALL")
    found = []
    for uid in (data[0] or b"").split():
        typ, parts = conn.uid("FETCH", uid, "(BODY.PEEK[])")
        raw = next((p[1] for p in parts if isinstance(p, tuple)), None)
        if raw is None:
            continue
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        subject = str(msg.get("Subject", ""))
        wanted = [subject_substr] if isinstance(subject_substr, str) else subject_substr
        if all(w in subject for w in wanted):
            found.append(msg)
    return found


def wait_for(user, subject_substr, timeout=30.0, via="imaps", mailbox="INBOX"):
    """Poll `mailbox` of `user` until a message whose Subject contains subject_substr
    (a string, or a list of strings that must all occur) arrives; None on timeout."""
    deadline = time.monotonic() + timeout
    conn = imap_connect(user, via)
    try:
        while True:
            conn.select(mailbox, readonly=True)
            found = fetch_matching(conn, subject_substr)
            if found:
                return found[-1]
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.25)
    finally:
        try:
            conn.logout()
        except (imaplib.IMAP4.error, OSError):
            pass


def body_text(msg):
    part = msg.get_body(preferencelist=("plain", "html"))
    return part.get_content() if part is not None else ""


def first_link(msg):
    """The status link: the URL in the first body line containing /t/ (else that line)."""
    for line in body_text(msg).splitlines():
        if "/t/" in line:
            url = re.search(r"https?://\S*/t/[^\s>\])]+", line)
            return url.group(0) if url else line.strip()
    return ""


def show(msg, what):
    if what == "subject":
        print(msg["Subject"])
    elif what == "link":
        print(first_link(msg))
    elif what == "headers":
        for k, v in msg.items():
            print(f"{k}: {v}")
    elif what == "body":
        print(body_text(msg))
    else:
        for k, v in msg.items():
            print(f"{k}: {v}")
        print()
        print(body_text(msg))


# ------------------------------------------------------------------ IDLE

def idle_until_exists(conn, timeout):
    """Raw IDLE (imaplib 3.11 has none): returns the first '* N EXISTS' line or None."""
    tag = conn._new_tag().decode()
    conn.send(f"{tag} IDLE\r\n".encode())
    line = conn.readline()
    if not line.startswith(b"+"):
        raise RuntimeError(f"IDLE refused: {line!r}")
    sock = conn.socket()
    deadline = time.monotonic() + timeout
    got = None
    while time.monotonic() < deadline:
        pending = isinstance(sock, ssl.SSLSocket) and sock.pending()
        if not pending:
            ready, _, _ = select.select([sock], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                break
        line = conn.readline()
        if line.endswith(b"EXISTS\r\n"):
            got = line.decode().strip()
            break
    conn.send(b"DONE\r\n")
    while True:  # read up to the tagged OK
        line = conn.readline()
        if line.startswith(tag.encode()):
            break
        if not line:
            raise RuntimeError("connection closed during IDLE")
    return got


# ------------------------------------------------------------------ selftest

def selftest():
    token = uuid.uuid4().hex[:8]
    ok = True

    def check(label, cond, detail=""):
        nonlocal ok
        ok &= bool(cond)
        print(f"{'ok  ' if cond else 'FAIL'} {label}{(': ' + detail) if detail else ''}")

    t0 = time.monotonic()
    send(build_message("tester@example.net", ["customer1@example.test"],
                       f"selftest smtp {token}", "over plain SMTP"), via="smtp")
    check("send to customer1 over SMTP (no auth)", True)
    send(build_message("agent@example.test", ["tickets+abc@example.test"],
                       f"selftest submission {token}", "over submission"),
         via="submission", user="agent@example.test")
    check("send to tickets+abc over submission (STARTTLS + AUTH)", True)

    m1 = wait_for("customer1@example.test", f"selftest smtp {token}", 20, via="imaps")
    check("read customer1 INBOX over IMAPS", m1 is not None,
          f"{time.monotonic() - t0:.2f}s after send")
    m2 = wait_for("tickets@example.test", f"selftest submission {token}", 20, via="imap")
    check("read tickets INBOX (plus-address) over IMAP + STARTTLS", m2 is not None)
    if m2 is not None:
        check("  Delivered-To keeps the +detail", "tickets+abc@" in str(m2.get("Delivered-To", "")),
              str(m2.get("Delivered-To", "")))

    try:
        send(build_message("x@example.net", ["nobody@example.test"], "x", "x"), via="smtp")
        check("unknown recipient rejected at RCPT", False)
    except smtplib.SMTPRecipientsRefused:
        check("unknown recipient rejected at RCPT", True)

    try:
        with smtplib.SMTP(host(), int(env("MAILSTACK_SUBMISSION_PORT")), timeout=10) as s:
            s.starttls(context=tls_context())
            s.sendmail("agent@example.test", ["customer2@example.test"], b"Subject: x\r\n\r\nx\r\n")
        check("submission without AUTH refused", False)
    except smtplib.SMTPException:
        check("submission without AUTH refused", True)

    conn = imap_connect("customer2@example.test", via="imaps")
    try:
        typ, caps = conn.capability()
        caps = caps[0].decode()
        check("IMAP capabilities include IDLE and MOVE", "IDLE" in caps and "MOVE" in caps)
        conn.select("INBOX")
        sent_at = time.monotonic()

        def later():
            time.sleep(0.3)
            send(build_message("tester@example.net", ["customer2@example.test"],
                               f"selftest idle {token}", "idle push"), via="smtp")

        import threading
        th = threading.Thread(target=later)
        th.start()
        got = idle_until_exists(conn, 15)
        th.join()
        check("IDLE pushes EXISTS after an SMTP send", got is not None,
              f"{got} after {time.monotonic() - sent_at - 0.3:.2f}s")
    finally:
        conn.logout()

    print("selftest:", "all passed" if ok else "FAILED")
    return 0 if ok else 1


# ------------------------------------------------------------------ CLI

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("send", help="send one mail")
    s.add_argument("--from", dest="sender", required=True)
    s.add_argument("--to", action="append", required=True)
    s.add_argument("--subject", required=True)
    s.add_argument("--body", default="")
    s.add_argument("--header", action="append", default=[], help="extra header NAME:VALUE")
    s.add_argument("--via", choices=["smtp", "submission"], default="smtp")
    s.add_argument("--user", help="AUTH user for submission (default: the From address)")

    w = sub.add_parser("wait", help="wait for a mail whose Subject contains a string, then print it")
    w.add_argument("--user", required=True)
    w.add_argument("--subject", required=True, action="append",
                   help="substring of the Subject (repeat: all must occur)")
    w.add_argument("--timeout", type=float, default=30)
    w.add_argument("--via", choices=["imaps", "imap", "plain"], default="imaps",
                   help="imaps (implicit TLS), imap (STARTTLS) or plain (no TLS)")
    w.add_argument("--mailbox", default="INBOX")
    w.add_argument("--show", choices=["subject", "link", "headers", "body", "all"], action="append")

    sub.add_parser("selftest", help="check the stack end to end")

    a = ap.parse_args(argv)
    try:
        if a.cmd == "send":
            headers = [tuple(h.split(":", 1)) for h in a.header]
            msg = build_message(a.sender, a.to, a.subject, a.body, [(k.strip(), v.strip()) for k, v in headers])
            print(send(msg, via=a.via, user=a.user))
            return 0
        if a.cmd == "wait":
            msg = wait_for(a.user, a.subject, a.timeout, via=a.via, mailbox=a.mailbox)
            if msg is None:
                print(f"mailtool: no mail with {' and '.join(map(repr, a.subject))} in the subject reached "
                      f"{a.user}'s {a.mailbox} within {a.timeout:g}s", file=sys.stderr)
                return 1
            for what in a.show or ["all"]:
                show(msg, what)
            return 0
        return selftest()
    except (OSError, smtplib.SMTPException, imaplib.IMAP4.error, ssl.SSLError) as e:
        print(f"mailtool: {a.cmd} failed: {type(e).__name__}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
