//! CPU clocks for the benchmarks, to the microsecond (a probe of a fast
//! writer lasts too few clock ticks for `/proc`), and the bytes this
//! process has written. Reads clocks and counters only.

/// User + system CPU seconds of this process so far.
pub fn process_cpu() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return f64::NAN;
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// CPU seconds of the calling thread so far.
pub fn thread_cpu() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the struct it is given.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } != 0 {
        return f64::NAN;
    }
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

// bench_work includes this file too and does not read it.
#[allow(dead_code)]
/// Bytes this process has handed to write(2) and its kind so far
/// (`wchar` of `/proc/self/io`: the WAL, the checkpoints' copies into the
/// database, whether or not they reached the disk yet).
pub fn written_bytes() -> f64 {
    std::fs::read_to_string("/proc/self/io")
        .ok()
        .and_then(|io| {
            io.lines()
                .find_map(|line| line.strip_prefix("wchar:"))
                .and_then(|n| n.trim().parse::<f64>().ok())
        })
        .unwrap_or(f64::NAN)
}
