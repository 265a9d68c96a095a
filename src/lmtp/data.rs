//! The message after DATA, pure: pieces of lines in, the mail out, with
//! dot-unstuffing, bare LF made CRLF, and a byte cap counted while reading
//! (over it, nothing more is kept, but the rest is read up to the final
//! dot so the session stays in step). It must not do I/O.

/// What the reader needs after a piece.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataStep {
    More,
    /// The final `.` line was read.
    End,
}

/// Collects one message.
#[derive(Debug)]
pub struct DataReader {
    out: Vec<u8>,
    size: u64,
    limit: u64,
    at_line_start: bool,
    over: bool,
}

impl DataReader {
    /// A reader that keeps at most `limit` bytes of message.
    pub fn new(limit: u64) -> DataReader {
        DataReader {
            out: Vec::new(),
            size: 0,
            limit,
            at_line_start: true,
            over: false,
        }
    }

    /// One piece: a whole line with its LF, or the start or a middle part
    /// of a line longer than the session's read size (no LF).
    pub fn push(&mut self, piece: &[u8]) -> DataStep {
        let complete = piece.ends_with(b"\n");
        if self.at_line_start && complete && super::protocol::trim_eol(piece) == b"." {
            return DataStep::End;
        }
        let body = match piece.strip_prefix(b".") {
            Some(unstuffed) if self.at_line_start => unstuffed,
            _ => piece,
        };
        if complete {
            let content = super::protocol::trim_eol(body);
            // A CR that ended the previous piece belongs to this LF.
            if content.is_empty() && !self.at_line_start && self.out.last() == Some(&b'\r') {
                self.out.pop();
                self.size = self.size.saturating_sub(1);
            }
            self.append(content);
            self.append(b"\r\n");
        } else {
            self.append(body);
        }
        self.at_line_start = complete;
        DataStep::More
    }

    fn append(&mut self, bytes: &[u8]) {
        self.size += bytes.len() as u64;
        if self.over {
            return;
        }
        if self.size > self.limit {
            // Over the cap: what was kept goes, the rest is only counted.
            self.over = true;
            self.out = Vec::new();
            return;
        }
        self.grow_for(bytes.len());
        self.out.extend_from_slice(bytes);
    }

    /// Makes room for `more` bytes, doubling but never past the limit, so
    /// that what a message holds (its capacity) is bounded by the limit.
    fn grow_for(&mut self, more: usize) {
        let (len, capacity) = (self.out.len(), self.out.capacity());
        if capacity - len >= more {
            return;
        }
        let limit = usize::try_from(self.limit).unwrap_or(usize::MAX);
        let want = (capacity * 2).max(len + more).max(4096).min(limit);
        // `size <= limit` here, so `want >= len + more`.
        self.out.reserve_exact(want.saturating_sub(len).max(more));
    }

    /// The bytes this reader holds in memory (what the DATA budget counts).
    pub fn held(&self) -> u64 {
        self.out.capacity() as u64
    }

    /// The message, or `Err(bytes read)` when it was over the limit.
    pub fn finish(self) -> Result<Vec<u8>, u64> {
        if self.over {
            Err(self.size)
        } else {
            Ok(self.out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(pieces: &[&[u8]], limit: u64) -> (Result<Vec<u8>, u64>, usize) {
        let mut reader = DataReader::new(limit);
        for (i, piece) in pieces.iter().enumerate() {
            if reader.push(piece) == DataStep::End {
                return (reader.finish(), i);
            }
        }
        panic!("no end of data in {pieces:?}");
    }

    #[test]
    fn dots_are_unstuffed_and_the_lone_dot_ends() {
        let pieces: [&[u8]; 5] = [
            b"Subject: x\r\n",
            b"\r\n",
            b"..hidden\r\n",
            b".\r\n",
            b"after",
        ];
        let (mail, end) = read(&pieces, 1000);
        assert_eq!(mail.expect("kept"), b"Subject: x\r\n\r\n.hidden\r\n");
        assert_eq!(
            end, 3,
            "the lone dot ends the message; what follows is not read"
        );
    }

    #[test]
    fn bare_lf_becomes_crlf_and_ends_too() {
        let pieces: [&[u8]; 3] = [b"a\n", b"..b\n", b".\n"];
        assert_eq!(read(&pieces, 1000).0.expect("kept"), b"a\r\n.b\r\n");
    }

    #[test]
    fn a_dot_inside_a_split_long_line_is_not_the_end() {
        // "xxxx" then ".\r\n" are two pieces of one long line.
        let pieces: [&[u8]; 4] = [b"xxxx", b".\r\n", b"y\r\n", b".\r\n"];
        assert_eq!(read(&pieces, 1000).0.expect("kept"), b"xxxx.\r\ny\r\n");
    }

    #[test]
    fn a_crlf_split_between_pieces_stays_one_line_end() {
        let pieces: [&[u8]; 3] = [b"abc\r", b"\n", b".\r\n"];
        assert_eq!(read(&pieces, 1000).0.expect("kept"), b"abc\r\n");
    }

    #[test]
    fn over_the_cap_nothing_is_kept_but_the_end_is_found() {
        let line = [b'z'; 100];
        let mut reader = DataReader::new(250);
        for _ in 0..10 {
            assert_eq!(reader.push(&line), DataStep::More);
        }
        assert_eq!(reader.out.capacity(), 0, "nothing buffered past the cap");
        assert_eq!(reader.push(b"\r\n"), DataStep::More);
        assert_eq!(reader.push(b".\r\n"), DataStep::End);
        assert_eq!(reader.finish(), Err(1002));
    }

    #[test]
    fn what_is_held_never_passes_the_cap() {
        let limit = 100_000;
        let mut reader = DataReader::new(limit);
        let line = [b'q'; 998];
        let mut most = 0;
        while reader.size + 1000 <= limit {
            reader.push(&line);
            reader.push(b"\r\n");
            most = most.max(reader.held());
        }
        assert!(most <= limit, "held {most} of a {limit} cap");
        assert!(reader.held() >= reader.size, "everything read is held");
    }

    #[test]
    fn exactly_the_cap_is_kept() {
        let pieces: [&[u8]; 2] = [b"12345678\r\n", b".\r\n"];
        assert_eq!(read(&pieces, 10).0.expect("kept").len(), 10);
        assert_eq!(read(&pieces, 9).0, Err(10));
    }
}
