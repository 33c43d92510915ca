//! One server-sent event: its lines, and the JSON of its `data:` line.
//!
//! Lines end in `\r\n`, `\n` or `\r`. A line starting with `:` is a
//! comment; `field: value` drops one space after the colon; a line without
//! a colon is a field with an empty value. Only `event` and `data` are
//! read. An event has at most one `data:` line (several would join into a
//! JSON text that is not a view of the bytes; no provider sends them), and
//! after the blank line that ends it, nothing but blank lines.

use super::scan::{Result, fail, span};
use super::{ApiKind, ErrorKind, FrameIndex, walk};

pub(super) fn walk_event(idx: &mut FrameIndex, event: &[u8], hint: ApiKind) -> Result<()> {
    let mut data: Option<(usize, usize)> = None;
    let mut ended = false;
    let mut pos = 0;
    while pos < event.len() {
        let rest = &event[pos..];
        let n = rest
            .iter()
            .position(|&b| b == b'\n' || b == b'\r')
            .unwrap_or(rest.len());
        let (start, end) = (pos, pos + n);
        pos = end;
        if pos < event.len() {
            pos += if event[pos] == b'\r' && event.get(pos + 1) == Some(&b'\n') {
                2
            } else {
                1
            };
        }
        let line = &event[start..end];
        if line.is_empty() {
            ended = true;
            continue;
        }
        if ended {
            return fail(start, ErrorKind::SseTrailingEvent);
        }
        if line[0] == b':' {
            continue;
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(c) => {
                let skip = usize::from(line.get(c + 1) == Some(&b' '));
                (&line[..c], start + c + 1 + skip)
            }
            None => (line, end),
        };
        match field {
            b"data" => {
                if data.is_some() {
                    return fail(start, ErrorKind::SseMultiLineData);
                }
                data = Some((value, end));
                idx.sse.data = Some(span(value, end));
            }
            b"event" => idx.sse.event = Some(span(value, end)),
            _ => {}
        }
    }
    match data {
        Some((start, end)) if &event[start..end] == b"[DONE]" => {
            idx.sse.done = true;
            Ok(())
        }
        Some((start, end)) => walk::walk_body(idx, event, start, end, hint),
        None => Ok(()),
    }
}
