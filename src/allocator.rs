//! The allocator's settings for the daemon: glibc's arenas and its mmap
//! threshold, set once at the start of `main` (issue 16, peak RSS). Owns
//! nothing else; on other C libraries it does nothing. An operator's own
//! glibc setting (`MALLOC_ARENA_MAX`, `MALLOC_MMAP_THRESHOLD_`, or the same
//! in `GLIBC_TUNABLES`) wins over ours.

/// glibc gives each thread that allocates an arena of its own (up to 8
/// per core), each keeping the memory freed in it: two arenas took ~4.5 MB
/// off the ingest benchmark's peak RSS (43.7 → 39.2 MB) at no CPU cost
/// we could measure; one arena took 4 MB more but cost 9% of the ingest
/// rate (the writer and the preparing thread queue on its lock).
///
/// glibc also raises its mmap threshold each time a large block is freed,
/// so after the first 200 KB attachment every large buffer comes from the
/// arenas and stays there once freed. A fixed 128 KB threshold (where the
/// default starts) maps each one afresh and returns it: 31.1–31.9 → 29.7 MB
/// peak on the ingest benchmark, for 8% more CPU per mail (0.69–0.72 →
/// 0.77–0.78 ms, interleaved runs). We keep it for the memory goal; an
/// operator who prefers the CPU sets `MALLOC_MMAP_THRESHOLD_=33554432`.
///
/// Weighed again against the pages (2026-12-06, alternated runs): 4 or 8
/// arenas served `/t` and `/r` no faster than two, and raised the ingest
/// peak to 30.0–30.2 and 31.4–31.6 MB (two: 29.3–29.9). mimalloc as the
/// global allocator served the pages 7–53% faster but peaked at 92 MB
/// in the ingest (37 MB when told to return memory at once, and then the
/// pages were no faster), so glibc with these two settings stays.
///
/// Call it first in `main`, before any thread starts. (The benchmarks'
/// limits, `bench_floor` and `bench_work`, keep glibc's defaults.)
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; no thread runs yet.
    unsafe {
        if !operator_set("MALLOC_ARENA_MAX", "glibc.malloc.arena_max") {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
        if !operator_set("MALLOC_MMAP_THRESHOLD_", "glibc.malloc.mmap_threshold") {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
        }
    }
}

/// Whether the environment sets this glibc malloc parameter, by its own
/// variable or in `GLIBC_TUNABLES`.
fn operator_set(variable: &str, tunable: &str) -> bool {
    std::env::var_os(variable).is_some()
        || std::env::var("GLIBC_TUNABLES").is_ok_and(|t| tunable_named(&t, tunable))
}

/// Whether `GLIBC_TUNABLES` (`name=value:name=value`) names `tunable`.
fn tunable_named(tunables: &str, tunable: &str) -> bool {
    tunables
        .split(':')
        .any(|pair| pair.split('=').next() == Some(tunable))
}

#[cfg(test)]
mod tests {
    use super::tunable_named;

    #[test]
    fn a_tunable_is_found_by_its_whole_name_only() {
        let set = "glibc.malloc.arena_max=4:glibc.malloc.mmap_threshold=1048576";
        assert!(tunable_named(set, "glibc.malloc.mmap_threshold"));
        assert!(tunable_named(set, "glibc.malloc.arena_max"));
        assert!(!tunable_named(set, "glibc.malloc.mmap"));
        assert!(!tunable_named("", "glibc.malloc.arena_max"));
    }
}
