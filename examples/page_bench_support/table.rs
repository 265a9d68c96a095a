//! The page benchmark's table: each route's requests/s, p50, p99, its
//! ratios to the bare route and to the one-read floor of the same round,
//! the server's CPU time per request and the load average, against the
//! goal (issue 16 §2). It prints; it measures nothing.

use super::wrk::{Figures, WARM_UP_SECONDS};

/// What every run of the table had in common.
pub struct Setup {
    pub tickets: u32,
    pub threads: u32,
    pub connections: u32,
    pub seconds: u32,
}

/// One line of the table: a route's figures and its round's two floors.
pub struct Row {
    pub round: u32,
    pub name: &'static str,
    pub bare_rps: f64,
    /// NaN on the bare route's own line.
    pub floor_rps: f64,
    pub figures: Figures,
}

pub fn print_table(rows: &[Row], args: &Setup) {
    println!(
        "\nover {} tickets, wrk -t{} -c{} -d{}s (after {} s of warm-up), server and wrk on {} cores; \
         goal for the pages: >= {GOAL_RATIO} of the bare route's requests/s, p99 <= {GOAL_P99_MS} ms",
        thousands(args.tickets),
        args.threads,
        args.connections,
        args.seconds,
        WARM_UP_SECONDS,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    println!(
        "{:<5} {:<24} {:>10} {:>7} {:>7} {:>8} {:>9} {:>10} {:>6}  goal",
        "round", "route", "req/s", "p50 ms", "p99 ms", "to bare", "to floor", "CPU us/req", "load"
    );
    for row in rows {
        let f = &row.figures;
        let ratio = f.requests_per_second / row.bare_rps;
        let to_floor = f.requests_per_second / row.floor_rps;
        let goal = match row.name {
            BARE_NAME | FLOOR_NAME => "floor",
            _ if ratio >= GOAL_RATIO && f.p99_ms <= GOAL_P99_MS => "met",
            _ => "missed",
        };
        println!(
            "{:<5} {:<24} {:>10.0} {:>7.2} {:>7.2} {ratio:>8.2} {:>9} {:>10.1} {:>6}  {goal}{}",
            row.round,
            row.name,
            f.requests_per_second,
            f.p50_ms,
            f.p99_ms,
            if to_floor.is_nan() {
                "-".to_string()
            } else {
                format!("{to_floor:.2}")
            },
            f.cpu_us_per_request,
            f.load_before,
            if f.errors { " (wrk saw errors)" } else { "" }
        );
    }
}

pub const BARE_NAME: &str = "bare route (2 KB)";
pub const FLOOR_NAME: &str = "one-read floor (2 KB)";
const GOAL_RATIO: f64 = 0.6;
const GOAL_P99_MS: f64 = 5.0;

/// 100000 → "100,000".
fn thousands(n: u32) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
