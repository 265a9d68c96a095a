//! The page benchmark's client side: `wrk` runs (warm-up, then the
//! measured run) over a Lua script that walks a list of paths, the figures
//! read back from wrk's `--latency` report, and the machine's load average
//! to print beside them. It starts nothing but `wrk` and knows no route.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};

/// How hard and how long wrk drives the server.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    pub threads: u32,
    pub connections: u32,
    /// Seconds of the measured run (after [`WARM_UP_SECONDS`]).
    pub seconds: u32,
}

/// Seconds of load before each measured run, not counted.
pub const WARM_UP_SECONDS: u32 = 3;

/// What one measured run gave.
#[derive(Debug, Clone)]
pub struct Figures {
    pub requests_per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// wrk counted non-2xx answers or socket errors.
    pub errors: bool,
    /// The 1-minute load average when the run started.
    pub load_before: String,
    /// CPU time of this process (the server: every thread) per request
    /// during the measured run, in microseconds: what a request costs,
    /// much less moved by what else runs on the machine than requests/s.
    pub cpu_us_per_request: f64,
    /// wrk's own report, for the log.
    pub report: String,
}

/// Warms up, then measures `base` + the script's paths under `load`.
pub async fn measure(load: Load, script: &Path, base: &str) -> anyhow::Result<Figures> {
    let warm = run(load, WARM_UP_SECONDS, script, base)
        .await
        .context("cannot run wrk: install it with `apt-get install wrk`")?;
    if !warm.status.success() {
        bail!("wrk failed: {}", String::from_utf8_lossy(&warm.stderr));
    }
    let load_before = load_average();
    let cpu_before = cpu_seconds();
    let run = run(load, load.seconds, script, base).await?;
    let cpu = cpu_seconds() - cpu_before;
    if !run.status.success() {
        bail!("wrk failed: {}", String::from_utf8_lossy(&run.stderr));
    }
    let report = String::from_utf8_lossy(&run.stdout).into_owned();
    let mut figures = parse(&report, load_before)?;
    figures.cpu_us_per_request = cpu * 1e6 / requests(&report)?;
    Ok(figures)
}

/// wrk with `--latency`, off the async threads.
async fn run(
    load: Load,
    seconds: u32,
    script: &Path,
    base: &str,
) -> anyhow::Result<std::process::Output> {
    let mut command = Command::new("wrk");
    command
        .arg(format!("-t{}", load.threads))
        .arg(format!("-c{}", load.connections))
        .arg(format!("-d{seconds}s"))
        .arg("--latency")
        .arg("-s")
        .arg(script)
        .arg(base);
    Ok(tokio::task::spawn_blocking(move || command.output()).await??)
}

/// The figures of a wrk `--latency` report.
pub fn parse(report: &str, load_before: String) -> anyhow::Result<Figures> {
    let rps = report
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .context("no Requests/sec in wrk's report")?;
    let percentile = |label: &str| {
        report
            .lines()
            .find(|l| l.trim_start().starts_with(label))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(millis)
            .with_context(|| format!("no {label} latency in wrk's report"))
    };
    Ok(Figures {
        requests_per_second: rps,
        p50_ms: percentile("50%")?,
        p99_ms: percentile("99%")?,
        errors: report.contains("Non-2xx") || report.contains("Socket errors"),
        load_before,
        cpu_us_per_request: f64::NAN,
        report: report.to_string(),
    })
}

/// The requests wrk counted ("300000 requests in 20.00s, …").
fn requests(report: &str) -> anyhow::Result<f64> {
    report
        .lines()
        .find_map(|l| l.trim().split_once(" requests in "))
        .and_then(|(n, _)| n.parse::<f64>().ok())
        .filter(|n| *n > 0.0)
        .context("no request count in wrk's report")
}

/// User and system CPU time of this process so far, every thread.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage writes into the struct it is given, nothing else.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return f64::NAN;
    }
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// wrk's durations ("812.00us", "1.23ms", "2.01s", "1.00m") in ms.
fn millis(text: &str) -> Option<f64> {
    let (number, scale) = if let Some(n) = text.strip_suffix("us") {
        (n, 1e-3)
    } else if let Some(n) = text.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1e3)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60e3)
    } else {
        return None;
    };
    number.parse::<f64>().ok().map(|n| n * scale)
}

/// Each wrk connection walks the paths in turn, from a random start.
pub fn lua_script(paths: &[String]) -> String {
    let list: Vec<String> = paths.iter().map(|l| format!("  \"{l}\",")).collect();
    format!(
        "local paths = {{\n{}\n}}\nlocal i = math.random(#paths)\n\
         request = function()\n  i = i % #paths + 1\n  return wrk.format(\"GET\", paths[i])\nend\n",
        list.join("\n")
    )
}

/// The 1-minute load average, as /proc/loadavg says it.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wrk_report_gives_its_figures() {
        let report = "  Latency Distribution\n     50%  812.00us\n     75%    1.10ms\n\
                      \x20    90%    2.00ms\n     99%    4.56ms\n  \
                      300000 requests in 20.00s, 1.00GB read\nRequests/sec:  15000.50\n";
        let figures = parse(report, "0.5".to_string()).unwrap();
        assert_eq!(figures.requests_per_second, 15000.5);
        assert!((figures.p50_ms - 0.812).abs() < 1e-9);
        assert!((figures.p99_ms - 4.56).abs() < 1e-9);
        assert!(!figures.errors);
        assert_eq!(requests(report).unwrap(), 300000.0);
        assert_eq!(millis("1.50s"), Some(1500.0));
        assert_eq!(millis("12"), None);
        assert!(parse("no figures", String::new()).is_err());
    }
}
