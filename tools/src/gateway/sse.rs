//! Server-sent events, split as they arrive: the unit the response gate
//! runs on when an answer is streamed.

use bytes::{Buf, Bytes, BytesMut};

/// Splits a byte stream into whole SSE events (each with its blank-line
/// terminator), whatever the network's chunking.
#[derive(Debug, Default)]
pub struct SseSplitter {
    buf: BytesMut,
}

impl SseSplitter {
    /// Adds bytes as they came.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole event, terminator included, if one is buffered.
    pub fn next_event(&mut self) -> Option<Bytes> {
        loop {
            let end = event_end(&self.buf)?;
            let event = self.buf.split_to(end).freeze();
            if !is_blank(&event) {
                return Some(event);
            }
        }
    }

    /// Whatever is left once the stream has ended (an event without its
    /// terminator), if anything but blank lines.
    pub fn finish(&mut self) -> Option<Bytes> {
        let rest = std::mem::take(&mut self.buf);
        if is_blank(&rest) {
            None
        } else {
            Some(rest.freeze())
        }
    }

    /// Bytes buffered and not yet an event.
    pub fn pending(&self) -> usize {
        self.buf.remaining()
    }
}

/// The end (exclusive) of the first event in `buf`: after the first blank
/// line (`\n\n`, `\r\n\r\n`, or `\r\r`, as the SSE spec allows).
fn event_end(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i < buf.len() {
        // Find the end of this line.
        let rel = buf[i..].iter().position(|&b| b == b'\n' || b == b'\r')?;
        let eol = i + rel;
        let next = if buf[eol] == b'\r' {
            if eol + 1 >= buf.len() {
                return None; // a CR that may yet be a CRLF
            }
            if buf[eol + 1] == b'\n' {
                eol + 2
            } else {
                eol + 1
            }
        } else {
            eol + 1
        };
        if eol == i {
            // An empty line ends the event (a leading one ends an empty
            // event, which `next_event` drops).
            return Some(next);
        }
        i = next;
    }
    None
}

fn is_blank(bytes: &[u8]) -> bool {
    bytes.iter().all(|b| *b == b'\n' || *b == b'\r')
}

/// Whether an event is OpenAI's end-of-stream marker, `data: [DONE]`.
pub fn is_done(event: &[u8]) -> bool {
    let trimmed = event.trim_ascii();
    trimmed == b"data: [DONE]" || trimmed == b"data:[DONE]"
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn events_split_on_blank_lines() {
        let mut s = SseSplitter::default();
        s.push(b"\r\ndata: a\n\ndata: b\r\n\r\nevent: x\ndata: c\n");
        assert_eq!(&s.next_event().unwrap()[..], b"data: a\n\n");
        assert_eq!(&s.next_event().unwrap()[..], b"data: b\r\n\r\n");
        assert!(s.next_event().is_none());
        s.push(b"\n");
        assert_eq!(&s.next_event().unwrap()[..], b"event: x\ndata: c\n\n");
        s.push(b"data: [DONE]");
        assert!(s.next_event().is_none());
        let last = s.finish().unwrap();
        assert!(is_done(&last));
        assert!(s.finish().is_none());
    }

    proptest! {
        /// Any bytes, cut anywhere: no panic, events come out in order and
        /// each ends with a line break; what is not in an event (or the
        /// unterminated rest) is only line breaks.
        #[test]
        fn any_bytes_split_without_loss(
            input in proptest::collection::vec(
                prop_oneof![Just(b'\n'), Just(b'\r'), Just(b'a'), Just(b':'), any::<u8>()],
                0..300,
            ),
            cut in 1usize..40,
        ) {
            let mut s = SseSplitter::default();
            let mut out: Vec<u8> = Vec::new();
            for piece in input.chunks(cut) {
                s.push(piece);
                while let Some(e) = s.next_event() {
                    prop_assert!(matches!(e.last(), Some(b'\n' | b'\r')));
                    prop_assert!(!is_blank(&e));
                    out.extend_from_slice(&e);
                }
            }
            if let Some(rest) = s.finish() {
                out.extend_from_slice(&rest);
            }
            // `out` is `input` with some runs of line breaks taken out.
            let mut i = 0;
            for &b in &input {
                if i < out.len() && out[i] == b {
                    i += 1;
                } else {
                    prop_assert!(b == b'\n' || b == b'\r', "lost a {b:#x}");
                }
            }
            prop_assert_eq!(i, out.len());
        }

        /// However the bytes are cut, the events come out whole and in order,
        /// and joined they are the input.
        #[test]
        fn chunking_does_not_matter(
            events in proptest::collection::vec("[a-z {}:\"]{0,20}", 1..20),
            cuts in proptest::collection::vec(1usize..17, 1..50),
        ) {
            let whole: Vec<u8> = events
                .iter()
                .flat_map(|e| format!("data: {e}\n\n").into_bytes())
                .collect();
            let mut s = SseSplitter::default();
            let mut out = Vec::new();
            let mut at = 0;
            let mut c = 0;
            while at < whole.len() {
                let n = cuts[c % cuts.len()].min(whole.len() - at);
                s.push(&whole[at..at + n]);
                at += n;
                c += 1;
                while let Some(e) = s.next_event() {
                    out.push(e);
                }
            }
            prop_assert!(s.finish().is_none());
            prop_assert_eq!(out.len(), events.len());
            for (e, want) in out.iter().zip(&events) {
                let want = format!("data: {want}\n\n");
                prop_assert_eq!(&e[..], want.as_bytes());
            }
        }
    }
}
