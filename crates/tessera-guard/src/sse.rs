//! A small reader of server-sent events (the WHATWG HTML "event stream" format), enough
//! for the issuer's revocation stream: `event`, `data` and `id` fields, comments, and
//! events split across network chunks anywhere. Lines end in LF or CRLF (a lone CR, which
//! the format also allows, is not recognised: Tessera never sends one). A line longer
//! than the bound, or an event's data longer than it, is an error, so a hostile or broken stream cannot grow memory.

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SseEvent {
    /// The `event` field, `message` when absent.
    pub(crate) kind: String,
    /// The `data` lines joined by `\n`.
    pub(crate) data: String,
}

/// A line longer than the reader's bound arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LineTooLong;

/// Reads events out of the chunks of a stream.
#[derive(Debug)]
pub(crate) struct SseReader {
    pending: Vec<u8>,
    kind: Option<String>,
    data: Option<String>,
    max_line: usize,
}

impl SseReader {
    /// A reader refusing lines longer than `max_line` bytes.
    pub(crate) fn new(max_line: usize) -> Self {
        Self {
            pending: Vec::new(),
            kind: None,
            data: None,
            max_line,
        }
    }

    /// Takes the next chunk and returns the events it completed.
    pub(crate) fn push(&mut self, chunk: &[u8]) -> Result<Vec<SseEvent>, LineTooLong> {
        self.pending.extend_from_slice(chunk);
        let mut events = Vec::new();
        let mut start = 0;
        while let Some(offset) = self.pending[start..].iter().position(|byte| *byte == b'\n') {
            let end = start + offset;
            let line = self.pending[start..end]
                .strip_suffix(b"\r")
                .unwrap_or(&self.pending[start..end]);
            let line = String::from_utf8_lossy(line).into_owned();
            start = end + 1;
            if let Some(event) = self.line(&line) {
                events.push(event);
            }
        }
        self.pending.drain(..start);
        let data_len = self.data.as_ref().map_or(0, String::len);
        if self.pending.len() > self.max_line || data_len > self.max_line {
            return Err(LineTooLong);
        }
        Ok(events)
    }

    fn line(&mut self, line: &str) -> Option<SseEvent> {
        if line.is_empty() {
            let kind = self.kind.take();
            let data = self.data.take()?;
            return Some(SseEvent {
                kind: kind.unwrap_or_else(|| "message".to_owned()),
                data,
            });
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => self.kind = Some(value.to_owned()),
            "data" => match &mut self.data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(value);
                }
                None => self.data = Some(value.to_owned()),
            },
            // `id` and `retry` matter to a reconnecting browser; this follower resumes
            // from its own cursor instead.
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &[u8] = b": keep-alive\n\nevent: ended\nid: 7\ndata: {\"sid\":\"a\"}\n\n\
        event:ended\r\ndata:{\"sid\":\"b\"}\r\n\r\ndata: one\ndata: two\n\n";

    fn expected() -> Vec<SseEvent> {
        vec![
            SseEvent {
                kind: "ended".to_owned(),
                data: r#"{"sid":"a"}"#.to_owned(),
            },
            SseEvent {
                kind: "ended".to_owned(),
                data: r#"{"sid":"b"}"#.to_owned(),
            },
            SseEvent {
                kind: "message".to_owned(),
                data: "one\ntwo".to_owned(),
            },
        ]
    }

    #[test]
    fn events_are_read_whole_or_split_at_any_byte() {
        assert_eq!(SseReader::new(1024).push(STREAM), Ok(expected()));

        for split in 0..STREAM.len() {
            let mut reader = SseReader::new(1024);
            let mut events = reader.push(&STREAM[..split]).unwrap();
            events.extend(reader.push(&STREAM[split..]).unwrap());
            assert_eq!(events, expected(), "split at {split}");
        }
    }

    #[test]
    fn comments_and_fields_without_data_dispatch_nothing() {
        let mut reader = SseReader::new(1024);

        assert_eq!(reader.push(b": hi\n\nevent: ended\nid: 3\n\n"), Ok(vec![]));
    }

    #[test]
    fn a_line_longer_than_the_bound_is_an_error() {
        let mut reader = SseReader::new(16);

        assert_eq!(reader.push(&[b'x'; 17]), Err(LineTooLong));
        assert_eq!(SseReader::new(16).push(&[b'x'; 16]), Ok(vec![]));
    }
}
