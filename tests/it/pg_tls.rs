//! TLS to PostgreSQL (issue 15): the real binary against a private cluster
//! that takes the test role over TCP only with TLS (`hostssl`), its server
//! certificate (for IP 127.0.0.1) signed by a CA made here with `openssl`.
//! The binary connects when `database.ca_file` names that CA (sslmode
//! `require`, and the default `prefer`), refuses the certificate without it,
//! saying why, and is turned away with `disable`. Runs only under
//! `POSTDESK_TEST_POSTGRES`; the cluster it reconfigures is its own.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::faults::instances::cluster::{PrivateCluster, rows};

/// Runs `program ARGS` in `dir`; its stdout, or a panic with its stderr.
fn run(program: &str, args: &[&str], dir: &Path) -> String {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{program} {args:?} failed: {stderr}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// ca.pem, and server.pem + server.key for IP 127.0.0.1 signed by it, in `dir`.
fn make_certificates(dir: &Path) {
    let key = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    let ext =
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n";
    std::fs::write(dir.join("server.ext"), ext).expect("server.ext is written");
    for command in [
        format!("req -x509 {key} -keyout ca.key -out ca.pem -days 2 -subj /CN=pgtls-CA")
            + " -addext basicConstraints=critical,CA:TRUE"
            + " -addext keyUsage=critical,keyCertSign,cRLSign",
        format!("req -new {key} -keyout server.key -out server.csr -subj /CN=127.0.0.1"),
        "x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2".to_string()
            + " -extfile server.ext -out server.pem",
    ] {
        let args: Vec<&str> = command.split_whitespace().collect();
        run("openssl", &args, dir);
    }
}

/// psql as the cluster's superuser over its socket.
fn psql(cluster: &PrivateCluster, args: &[&str]) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/pgcluster");
    let dir = cluster.dir.display().to_string();
    let base = ["psql", &dir, "-X", "-q", "-tA", "-v", "ON_ERROR_STOP=1"];
    run(
        script.to_str().expect("a UTF-8 path"),
        &[&base[..], args].concat(),
        &cluster.dir,
    )
}

/// Installs the server certificate, turns TLS on and makes every TCP line
/// of pg_hba `hostssl`, then waits until the server has reloaded.
fn enable_tls_only(cluster: &PrivateCluster, certs: &Path) {
    let data = cluster.dir.join("data");
    let owner = std::fs::metadata(&data).expect("the cluster's data dir");
    for name in ["server.pem", "server.key"] {
        let to = data.join(name);
        std::fs::copy(certs.join(name), &to).expect("the certificate is copied");
        std::os::unix::fs::chown(&to, Some(owner.uid()), Some(owner.gid())).expect("chown");
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    let hba = data.join("pg_hba.conf");
    let text = std::fs::read_to_string(&hba).expect("pg_hba.conf is readable");
    // Every `host` line (TCP, with or without TLS) becomes `hostssl`.
    let tls_only = text.replace("\nhost ", "\nhostssl ");
    assert_ne!(tls_only, text, "pg_hba.conf has no host line");
    // Written in place: the file keeps its owner.
    std::fs::write(&hba, tls_only).expect("pg_hba.conf is rewritten");
    let sql = "ALTER SYSTEM SET ssl = on;ALTER SYSTEM SET ssl_cert_file = 'server.pem';\
               ALTER SYSTEM SET ssl_key_file = 'server.key';SELECT pg_reload_conf()";
    // One -c each: ALTER SYSTEM cannot run inside a transaction block.
    let args: Vec<&str> = sql.split(';').flat_map(|q| ["-c", q]).collect();
    psql(cluster, &args);
    let deadline = Instant::now() + Duration::from_secs(10);
    while psql(cluster, &["-c", "SHOW ssl"]).trim() != "on" {
        assert!(Instant::now() < deadline, "no TLS 10 s after a reload");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `postdesk ARGS` on the database at `url`, trusting `ca_file` if given.
fn postdesk(dir: &Path, url: &str, ca_file: Option<&Path>, args: &[&str]) -> Output {
    let mut cmd = Command::new(crate::support::binary());
    cmd.args(args)
        .current_dir(dir)
        .env("RUST_LOG", "warn")
        .env("POSTDESK__DATABASE__PATH", dir.join("postdesk.db"))
        .env("POSTDESK__DATABASE__URL", url)
        .env_remove("POSTDESK__DATABASE__CA_FILE")
        .stdin(Stdio::null());
    if let Some(ca) = ca_file {
        cmd.env("POSTDESK__DATABASE__CA_FILE", ca);
    }
    cmd.output().expect("postdesk runs")
}

/// Asserts that `out` succeeded (or failed) with `needle` in its stdout (or stderr).
fn check(out: &Output, success: bool, needle: &str, case: &str) {
    let (stdout, stderr) = (&out.stdout, &out.stderr);
    let (stdout, stderr) = (
        String::from_utf8_lossy(stdout),
        String::from_utf8_lossy(stderr),
    );
    let said = if success { &stdout } else { &stderr };
    let ok = out.status.success() == success && said.contains(needle);
    let want = if success { "success" } else { "failure" };
    let got = out.status;
    assert!(
        ok,
        "{case}: want {want} with `{needle}`, got {got}\n{stdout}\n{stderr}"
    );
}

#[tokio::test]
async fn the_store_speaks_tls_to_postgres_and_verifies_the_server_certificate() {
    if !std::env::var("POSTDESK_TEST_POSTGRES").is_ok_and(|u| !u.trim().is_empty()) {
        eprintln!("skipped: TLS to PostgreSQL needs POSTDESK_TEST_POSTGRES (unset)");
        return;
    }
    let cluster = PrivateCluster::start().await;
    let url = cluster.create_database("pgtls").await;
    let certs = tempfile::tempdir().expect("a temp dir");
    let dir = certs.path();
    make_certificates(dir);
    enable_tls_only(&cluster, dir);
    let ca = dir.join("ca.pem");
    let ca = Some(ca.as_path());

    // Without TLS the server turns the test role away: only hostssl is left.
    rows(&url, "SELECT 1").expect_err("a plain connection is refused");

    let require = format!("{url}?sslmode=require");
    let out = postdesk(dir, &require, ca, &["migrate"]);
    check(&out, true, "migrations applied", "require with the CA");
    let out = postdesk(dir, &require, None, &["migrate"]);
    check(
        &out,
        false,
        "invalid peer certificate: UnknownIssuer",
        "require without the CA",
    );
    let out = postdesk(dir, &format!("{url}?sslmode=disable"), ca, &["migrate"]);
    check(&out, false, "no pg_hba.conf entry", "disable");
    // The default sslmode (prefer) takes the TLS the server offers.
    let out = postdesk(dir, &url, ca, &["tickets", "list"]);
    check(&out, true, "", "prefer with the CA");
}
