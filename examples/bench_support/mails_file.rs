//! The mails file `bench_ingest` writes for the programs that measure its
//! limits (`bench_floor`, `bench_work`): each mail as a u32 little-endian
//! length, then its bytes. Reading only; no other I/O.

use std::io::Read;

use anyhow::Context;

/// The mails file whole, and where each mail is in it (one copy).
pub fn read_mails(
    path: &std::path::Path,
) -> anyhow::Result<(Vec<u8>, Vec<std::ops::Range<usize>>)> {
    let mut data = Vec::new();
    std::fs::File::open(path)
        .with_context(|| format!("cannot open {}", path.display()))?
        .read_to_end(&mut data)?;
    let mut mails = Vec::new();
    let mut at = 0;
    while at + 4 <= data.len() {
        let len = u32::from_le_bytes(data[at..at + 4].try_into()?) as usize;
        at += 4;
        anyhow::ensure!(at + len <= data.len(), "a truncated mails file");
        mails.push(at..at + len);
        at += len;
    }
    Ok((data, mails))
}
