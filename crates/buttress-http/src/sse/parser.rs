//! The `text/event-stream` parser: bytes in, events out, whatever the chunking.
//!
//! It follows the WHATWG HTML "Server-sent events" interpretation rules: lines end
//! with CRLF, LF or CR (a CRLF split between two chunks is one line end); one
//! leading byte-order mark is skipped; a line starting with `:` is a comment; a
//! field is `name: value` (one space after the colon dropped), or a bare `name`
//! with an empty value; `data` lines accumulate (joined by LF), `event` sets the
//! type, `id` the last event ID (unless it contains NUL), `retry` the reconnection
//! time (digits only); a blank line dispatches the event, unless it has no data.
//! Invalid UTF-8 is replaced with U+FFFD. An event cut off before its blank line is
//! never dispatched: call [`Parser::reset`] when a connection ends.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// One event from an event stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    event: String,
    data: String,
    id: Option<Arc<str>>,
    last_event_id: Arc<str>,
}

impl Event {
    /// An event of type `message` carrying `data`, with no id (for tests and for
    /// feeding a [`Resume`](super::Resume) by hand).
    pub fn new(data: impl Into<String>) -> Self {
        Self {
            event: "message".to_owned(),
            data: data.into(),
            id: None,
            last_event_id: Arc::from(""),
        }
    }

    /// Sets the type.
    #[must_use]
    pub fn with_event(mut self, event: impl Into<String>) -> Self {
        self.event = event.into();
        self
    }

    /// Sets the id (and the last event ID to it).
    #[must_use]
    pub fn with_id(mut self, id: &str) -> Self {
        let id: Arc<str> = Arc::from(id);
        self.last_event_id = id.clone();
        self.id = Some(id);
        self
    }

    /// The event type: the last `event` field, or `message`.
    pub fn event(&self) -> &str {
        &self.event
    }

    /// The data: the `data` fields joined by line feeds.
    pub fn data(&self) -> &str {
        &self.data
    }

    /// Takes the data out.
    pub fn into_data(self) -> String {
        self.data
    }

    /// The id this event carried in an `id` field of its own, if any. Duplicates are
    /// recognised by it.
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// The stream's last event ID when the event was dispatched (the browser's
    /// `MessageEvent.lastEventId`): the most recent `id` field, in this event or an
    /// earlier one; empty if none (or reset by an empty `id`).
    pub fn last_event_id(&self) -> &str {
        &self.last_event_id
    }

    pub(crate) fn id_arc(&self) -> Option<&Arc<str>> {
        self.id.as_ref()
    }
}

/// The parser found an event, or a line, longer than its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLarge {
    /// The limit, in bytes.
    pub limit: usize,
}

impl fmt::Display for TooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "event larger than the {} byte limit", self.limit)
    }
}

impl std::error::Error for TooLarge {}

/// An incremental `text/event-stream` parser: [`feed`](Self::feed) it chunks as
/// they come, take the events with [`next_event`](Self::next_event).
#[derive(Debug)]
pub struct Parser {
    /// Bytes of the line being read (and, at the start of a stream, of a possible
    /// byte-order mark).
    line: Vec<u8>,
    /// The last byte seen was a CR: a LF right after it ends no other line.
    after_cr: bool,
    /// At the start of a stream, before the byte-order mark was ruled in or out.
    at_start: bool,
    event_type: String,
    data: String,
    /// At least one `data` field in this block (the data buffer is not empty).
    has_data: bool,
    /// The `id` field of this block, if any.
    block_id: Option<Arc<str>>,
    /// The last event ID buffer (updated by `id` fields) and string (committed at
    /// each blank line, what a reconnection resumes from).
    id_buffer: Arc<str>,
    last_event_id: Arc<str>,
    retry: Option<Duration>,
    ready: VecDeque<Event>,
    max_size: usize,
    too_large: bool,
}

impl Default for Parser {
    fn default() -> Self {
        Self::new(usize::MAX)
    }
}

impl Parser {
    /// A parser that gives up on an event (or line) longer than `max_size` bytes.
    pub fn new(max_size: usize) -> Self {
        Self {
            line: Vec::new(),
            after_cr: false,
            at_start: true,
            event_type: String::new(),
            data: String::new(),
            has_data: false,
            block_id: None,
            id_buffer: Arc::from(""),
            last_event_id: Arc::from(""),
            retry: None,
            ready: VecDeque::new(),
            max_size,
            too_large: false,
        }
    }

    /// Parses `chunk`; complete events queue up for [`next_event`](Self::next_event).
    ///
    /// Past the size limit the parser stops: [`too_large`](Self::too_large) says so
    /// and nothing more is parsed.
    pub fn feed(&mut self, mut chunk: &[u8]) {
        if self.too_large {
            return;
        }
        if self.at_start {
            // Hold the first bytes until they rule the byte-order mark in or out.
            let take = chunk.len().min(BOM.len() - self.line.len());
            self.line.extend_from_slice(&chunk[..take]);
            chunk = &chunk[take..];
            let n = self.line.len();
            if self.line[..] != BOM[..n] {
                self.at_start = false;
                let held = std::mem::take(&mut self.line);
                self.scan(&held);
            } else if n == BOM.len() {
                self.at_start = false;
                self.line.clear();
            } else {
                return;
            }
        }
        self.scan(chunk);
    }

    fn scan(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() && !self.too_large {
            if self.after_cr {
                self.after_cr = false;
                if bytes[0] == b'\n' {
                    bytes = &bytes[1..];
                    continue;
                }
            }
            match bytes.iter().position(|&b| b == b'\n' || b == b'\r') {
                Some(end) => {
                    self.after_cr = bytes[end] == b'\r';
                    if self.line.is_empty() {
                        self.line_done(&bytes[..end]);
                    } else {
                        self.line.extend_from_slice(&bytes[..end]);
                        let line = std::mem::take(&mut self.line);
                        self.line_done(&line);
                        // Keep the allocation for the next long line.
                        self.line = line;
                        self.line.clear();
                    }
                    bytes = &bytes[end + 1..];
                }
                None => {
                    self.line.extend_from_slice(bytes);
                    self.check_size(0);
                    return;
                }
            }
        }
    }

    fn check_size(&mut self, extra: usize) {
        let size = self.line.len() + self.data.len() + self.event_type.len() + extra;
        if size > self.max_size {
            self.too_large = true;
            self.line = Vec::new();
        }
    }

    fn line_done(&mut self, line: &[u8]) {
        if line.is_empty() {
            self.dispatch();
            return;
        }
        if line[0] == b':' {
            return;
        }
        let (name, value) = match line.iter().position(|&b| b == b':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        match name {
            b"data" => {
                self.check_size(value.len());
                if self.too_large {
                    return;
                }
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(&String::from_utf8_lossy(value));
                self.has_data = true;
            }
            b"event" => {
                self.check_size(value.len());
                if !self.too_large {
                    self.event_type = String::from_utf8_lossy(value).into_owned();
                }
            }
            b"id" if !value.contains(&0) => {
                let id: Arc<str> = Arc::from(String::from_utf8_lossy(value).as_ref());
                self.id_buffer = id.clone();
                self.block_id = Some(id);
            }
            b"retry" if !value.is_empty() && value.iter().all(u8::is_ascii_digit) => {
                let ms = value.iter().fold(0u64, |n, &b| {
                    n.saturating_mul(10).saturating_add(u64::from(b - b'0'))
                });
                self.retry = Some(Duration::from_millis(ms));
            }
            _ => {}
        }
    }

    fn dispatch(&mut self) {
        self.last_event_id = self.id_buffer.clone();
        let id = self.block_id.take();
        if !self.has_data {
            self.event_type.clear();
            return;
        }
        let event = if self.event_type.is_empty() {
            "message".to_owned()
        } else {
            std::mem::take(&mut self.event_type)
        };
        self.ready.push_back(Event {
            event,
            data: std::mem::take(&mut self.data),
            id,
            last_event_id: self.last_event_id.clone(),
        });
        self.has_data = false;
    }

    /// The next complete event, in order.
    pub fn next_event(&mut self) -> Option<Event> {
        self.ready.pop_front()
    }

    /// The stream's last event ID (committed at each blank line): what a
    /// reconnection sends as `Last-Event-ID`. `None` when empty.
    pub fn last_event_id(&self) -> Option<&str> {
        (!self.last_event_id.is_empty()).then_some(&*self.last_event_id)
    }

    /// Starts from a known last event ID (resuming a stream read before).
    pub fn set_last_event_id(&mut self, id: &str) {
        self.last_event_id = Arc::from(id);
        self.id_buffer = self.last_event_id.clone();
    }

    /// The reconnection time the server last asked for with `retry`.
    pub fn retry(&self) -> Option<Duration> {
        self.retry
    }

    /// Whether an event or line went past the size limit (the parser then stops).
    pub fn too_large(&self) -> Option<TooLarge> {
        self.too_large.then_some(TooLarge {
            limit: self.max_size,
        })
    }

    /// The connection ended: drops the event being read (never dispatched, as the
    /// format requires) and expects a new stream (with its own byte-order mark).
    /// Complete events not yet taken, the last event ID and the retry time stay.
    pub fn reset(&mut self) {
        self.line.clear();
        self.after_cr = false;
        self.at_start = true;
        self.event_type.clear();
        self.data.clear();
        self.has_data = false;
        self.block_id = None;
        self.id_buffer = self.last_event_id.clone();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse_all(chunks: &[&[u8]]) -> (Vec<Event>, Parser) {
        let mut p = Parser::default();
        for c in chunks {
            p.feed(c);
        }
        let events = std::iter::from_fn(|| p.next_event()).collect();
        (events, p)
    }

    fn datas(events: &[Event]) -> Vec<&str> {
        events.iter().map(Event::data).collect()
    }

    #[test]
    fn fields_comments_and_defaults() {
        let (ev, p) = parse_all(&[
            b": hello\nevent: tick\ndata: 1\nid: a\n\ndata:2\ndata\n\nretry: 1500\nretry: x\n",
        ]);
        assert_eq!(ev.len(), 2);
        assert_eq!(
            (ev[0].event(), ev[0].data(), ev[0].id()),
            ("tick", "1", Some("a"))
        );
        assert_eq!(
            (ev[1].event(), ev[1].data(), ev[1].id()),
            ("message", "2\n", None)
        );
        assert_eq!(ev[1].last_event_id(), "a", "the last event id persists");
        assert_eq!(p.retry(), Some(Duration::from_millis(1500)));
        assert_eq!(p.last_event_id(), Some("a"));
    }

    #[test]
    fn line_endings_and_bom() {
        let (ev, _) = parse_all(&[b"\xEF\xBB\xBFdata: a\r\n\r\ndata: b\r\rdata: c\n\n"]);
        assert_eq!(datas(&ev), ["a", "b", "c"]);
        // A second BOM is not skipped: the field name is then "\u{feff}data".
        let (ev, _) = parse_all(&[b"\xEF\xBB\xBF\xEF\xBB\xBFdata: a\n\ndata: b\n\n"]);
        assert_eq!(datas(&ev), ["b"]);
    }

    #[test]
    fn a_crlf_split_across_chunks_is_one_line_end() {
        // Read as two line ends, the LF would be a blank line dispatching "a" alone.
        let (ev, _) = parse_all(&[b"data: a\r", b"\n", b"data: b\r", b"\n", b"\r", b"\n"]);
        assert_eq!(datas(&ev), ["a\nb"]);
    }

    #[test]
    fn an_event_without_its_blank_line_is_not_dispatched() {
        let mut p = Parser::default();
        p.feed(b"id: 1\ndata: one\n\nid: 2\ndata: tw");
        assert_eq!(p.next_event().unwrap().data(), "one");
        assert_eq!(p.next_event(), None);
        assert_eq!(p.last_event_id(), Some("1"), "id 2 was never committed");
        p.reset();
        p.feed(b"o\n\ndata: two\nid: 2\n\n");
        let e = p.next_event().unwrap();
        assert_eq!((e.data(), e.id()), ("two", Some("2")));
        assert_eq!(p.next_event(), None);
    }

    #[test]
    fn ids_with_nul_are_ignored_and_an_empty_id_resets() {
        let (ev, p) = parse_all(&[b"id: 7\ndata: a\n\nid: x\0y\ndata: b\n\nid\ndata: c\n\n"]);
        assert_eq!(ev[1].id(), None);
        assert_eq!(ev[1].last_event_id(), "7");
        assert_eq!(ev[2].id(), Some(""));
        assert_eq!(ev[2].last_event_id(), "");
        assert_eq!(p.last_event_id(), None);
    }

    #[test]
    fn an_id_only_block_moves_the_last_event_id_without_an_event() {
        let (ev, p) = parse_all(&[b"id: 9\n\n"]);
        assert!(ev.is_empty());
        assert_eq!(p.last_event_id(), Some("9"));
    }

    #[test]
    fn invalid_utf8_is_replaced() {
        let (ev, _) = parse_all(&[b"data: a\xFFb\xE2\x82\n\n"]);
        assert_eq!(ev[0].data(), "a\u{FFFD}b\u{FFFD}");
    }

    #[test]
    fn the_size_limit_stops_the_parser() {
        let mut p = Parser::new(16);
        p.feed(b"data: 0123456789\n\n");
        assert_eq!(p.next_event().unwrap().data(), "0123456789");
        p.feed(b"data: 0123456789\ndata: 0123456789\n\n");
        assert_eq!(p.too_large(), Some(TooLarge { limit: 16 }));
        assert_eq!(p.next_event(), None);
        // A single unterminated line is caught too.
        let mut p = Parser::new(16);
        p.feed(&[b'x'; 17]);
        assert!(p.too_large().is_some());
    }

    /// Events as (type, data, id, last event id).
    type Summary = Vec<(String, String, Option<String>, String)>;

    /// The reference: the whole input decoded at once, split into lines, and the
    /// format's rules applied in the most direct way.
    fn reference(input: &[u8]) -> (Summary, Option<u64>, String) {
        let text = String::from_utf8_lossy(input);
        let text = text.strip_prefix('\u{FEFF}').unwrap_or(&text);
        let mut lines = Vec::new();
        let mut cur = String::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\r' => {
                    if chars.peek() == Some(&'\n') {
                        chars.next();
                    }
                    lines.push(std::mem::take(&mut cur));
                }
                '\n' => lines.push(std::mem::take(&mut cur)),
                c => cur.push(c),
            }
        }
        let (mut out, mut retry) = (Vec::new(), None);
        let (mut ty, mut data, mut buf_id, mut last_id, mut block_id) = (
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            None,
        );
        for line in lines {
            if line.is_empty() {
                last_id = buf_id.clone();
                let id = block_id.take();
                if data.is_empty() {
                    ty.clear();
                    continue;
                }
                data.pop();
                let t = if ty.is_empty() {
                    "message".to_owned()
                } else {
                    std::mem::take(&mut ty)
                };
                out.push((t, std::mem::take(&mut data), id, last_id.clone()));
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (name, value) = match line.split_once(':') {
                Some((n, v)) => (n.to_owned(), v.strip_prefix(' ').unwrap_or(v).to_owned()),
                None => (line.clone(), String::new()),
            };
            match name.as_str() {
                "data" => {
                    data.push_str(&value);
                    data.push('\n');
                }
                "event" => ty = value,
                "id" if !value.contains('\0') => {
                    buf_id = value.clone();
                    block_id = Some(value);
                }
                "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                    retry = value.parse::<u64>().ok().or(Some(u64::MAX));
                }
                _ => {}
            }
        }
        (out, retry, last_id)
    }

    fn summary(events: &[Event]) -> Summary {
        events
            .iter()
            .map(|e| {
                (
                    e.event().to_owned(),
                    e.data().to_owned(),
                    e.id().map(str::to_owned),
                    e.last_event_id().to_owned(),
                )
            })
            .collect()
    }

    /// Streams built from the pieces that matter: fields, comments, every line
    /// ending, a BOM, CRs and colons and spaces in odd places, invalid UTF-8.
    fn stream() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            Just(b"data".to_vec()),
            Just(b"data: ".to_vec()),
            Just(b"data:".to_vec()),
            Just(b"event: ".to_vec()),
            Just(b"id: ".to_vec()),
            Just(b"id".to_vec()),
            Just(b"retry: ".to_vec()),
            Just(b": comment".to_vec()),
            Just(b"\n".to_vec()),
            Just(b"\r".to_vec()),
            Just(b"\r\n".to_vec()),
            Just(b"\n\n".to_vec()),
            Just(b"\xEF\xBB\xBF".to_vec()),
            Just(b"\xEF\xBB".to_vec()),
            Just(b" ".to_vec()),
            Just(b":".to_vec()),
            Just(b"\0".to_vec()),
            Just("é€".as_bytes().to_vec()),
            Just(b"\xFF\xE2\x82".to_vec()),
            "[a-z0-9]{1,6}".prop_map(String::into_bytes),
            "[0-9]{1,25}".prop_map(String::into_bytes),
        ];
        prop::collection::vec(piece, 0..80).prop_map(|v| v.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Any split of any stream gives the same events, retry and last event id
        /// as the reference parser reading it whole.
        #[test]
        fn any_chunking_matches_the_reference(
            input in stream(),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
        ) {
            let mut at: Vec<usize> = cuts.iter().map(|i| i.index(input.len() + 1)).collect();
            at.sort_unstable();
            let mut chunks: Vec<&[u8]> = Vec::new();
            let mut start = 0;
            for &c in &at {
                chunks.push(&input[start..c]);
                start = c;
            }
            chunks.push(&input[start..]);
            let (events, parser) = parse_all(&chunks);
            let (expected, retry, last_id) = reference(&input);
            prop_assert_eq!(summary(&events), expected);
            prop_assert_eq!(parser.retry().map(|d| d.as_millis()), retry.map(u128::from).map(|r| r.min(u128::from(u64::MAX))));
            prop_assert_eq!(parser.last_event_id().unwrap_or(""), last_id.as_str());
        }

        /// Byte by byte is a chunking too, and the hardest one.
        #[test]
        fn byte_by_byte_matches_whole(input in stream()) {
            let whole = parse_all(&[&input]).0;
            let bytes: Vec<&[u8]> = input.chunks(1).collect();
            prop_assert_eq!(parse_all(&bytes).0, whole);
        }
    }
}
