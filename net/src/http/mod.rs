//! A minimal HTTP/1.1 request-head parser, and a small server loop
//! ([`server`]).
//!
//! [`parse_request`] reads one request head (request line and header
//! fields, up to the empty line) from the start of a buffer, without
//! allocating: the method, target and header fields borrow the buffer, the
//! header list is a slice the caller provides. It answers
//! [`Status::Partial`] while the head is incomplete, and decides what a
//! server needs to frame the exchange:
//!
//! - the body: none, `Content-Length: n`, or chunked
//!   ([`Body`]); conflicting or malformed lengths, `Transfer-Encoding` with
//!   `Content-Length`, and a `Transfer-Encoding` whose last coding is not
//!   `chunked` are errors (request smuggling defences of RFC 9112 §6);
//! - keep-alive: HTTP/1.1 unless `Connection: close`, HTTP/1.0 only with
//!   `Connection: keep-alive`;
//! - a head longer than the caller's limit is [`Error::TooLarge`] (431), as
//!   soon as the limit is reached without an end of head in sight.
//!
//! The grammar is RFC 9112's, strictly: tokens for the method and field
//! names, no whitespace before a field's colon, no obsolete line folding,
//! no control characters in values. Lines may end in CRLF or a bare LF
//! (which RFC 9112 §2.2 lets a recipient accept); empty lines before the
//! request line are skipped. HTTP/1.1 requests need exactly one `Host`.
//! Invalid bytes already present make a partial head an error at once, so
//! garbage is refused without waiting for the limit.
//!
//! [`BodySkipper`] then discards the body as it arrives, in as many pieces
//! as the socket gives: `Content-Length` bytes, or a chunked body whose
//! framing (sizes, extensions, CRLFs, trailer fields) it checks as it
//! streams, without buffering.

pub mod server;

use std::fmt;

/// The default cap on a request head: 8 KiB.
pub const MAX_HEAD: usize = 8 * 1024;

/// The HTTP version of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Version {
    /// HTTP/1.0.
    Http10,
    /// HTTP/1.1.
    Http11,
}

/// One header field: the name as sent (compare it case-insensitively) and
/// the value without surrounding whitespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header<'b> {
    /// The field name.
    pub name: &'b str,
    /// The field value (may hold bytes above 0x7f).
    pub value: &'b [u8],
}

impl Header<'_> {
    /// An empty header, to fill arrays with.
    pub const EMPTY: Header<'static> = Header {
        name: "",
        value: b"",
    };
}

/// How the request's body is framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Body {
    /// No body.
    None,
    /// `Content-Length` bytes follow the head.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// A parsed request head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request<'h, 'b> {
    /// The method (`GET`, …), as sent.
    pub method: &'b str,
    /// The request target (`/index.html`, …).
    pub target: &'b str,
    /// The version.
    pub version: Version,
    /// The header fields, in order.
    pub headers: &'h [Header<'b>],
    /// The body's framing.
    pub body: Body,
    /// Whether the connection may serve another request after this one.
    pub keep_alive: bool,
    /// The head's length in bytes, the final empty line included: the body
    /// (or the next request) starts there.
    pub head_len: usize,
}

impl<'b> Request<'_, 'b> {
    /// The value of the first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&'b [u8]> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }
}

/// The outcome of a parse that found no error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status<T> {
    /// A whole head was parsed.
    Complete(T),
    /// The buffer holds the start of a valid head; read more.
    Partial,
}

/// Why a request head was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Error {
    /// The head does not follow the grammar, or its framing is ambiguous
    /// (400 Bad Request). The text says what was wrong.
    Malformed(&'static str),
    /// The head is longer than the limit (431 Request Header Fields Too
    /// Large).
    TooLarge,
    /// More header fields than the caller's slice holds (431).
    TooManyHeaders,
    /// An HTTP version other than 1.0 and 1.1 (505 HTTP Version Not
    /// Supported).
    Version,
    /// A transfer coding other than a lone `chunked` (501 Not
    /// Implemented).
    UnsupportedCoding,
}

impl Error {
    /// The status code a server answers with.
    pub const fn status(&self) -> u16 {
        match self {
            Error::Malformed(_) => 400,
            Error::TooLarge | Error::TooManyHeaders => 431,
            Error::Version => 505,
            Error::UnsupportedCoding => 501,
        }
    }

    /// The status code's reason phrase.
    pub const fn reason(&self) -> &'static str {
        reason(self.status())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Malformed(why) => write!(f, "malformed request: {why}"),
            Error::TooLarge => f.write_str("request head too large"),
            Error::TooManyHeaders => f.write_str("too many header fields"),
            Error::Version => f.write_str("unsupported HTTP version"),
            Error::UnsupportedCoding => f.write_str("unsupported transfer coding"),
        }
    }
}

impl std::error::Error for Error {}

/// The reason phrase of the status codes this module produces (and a few
/// common ones); `""` for others.
pub const fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        404 => "Not Found",
        408 => "Request Timeout",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

/// `tchar` of RFC 9110 §5.6.2.
const fn is_tchar(b: u8) -> bool {
    matches!(b,
        b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.'
        | b'^' | b'_' | b'`' | b'|' | b'~' | b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z')
}

/// A byte allowed in a field value (`field-vchar`, SP, HTAB).
const fn is_value_byte(b: u8) -> bool {
    b == b'\t' || (b >= 0x20 && b != 0x7f)
}

/// A byte allowed in a request target (visible ASCII).
const fn is_target_byte(b: u8) -> bool {
    b > 0x20 && b < 0x7f
}

/// A byte that may appear anywhere in a head.
const fn is_head_byte(b: u8) -> bool {
    is_value_byte(b) || b == b'\r' || b == b'\n'
}

/// A cursor over the head.
struct Cursor<'b> {
    buf: &'b [u8],
    pos: usize,
}

/// Where a line ends: the index of its terminator and the index after it.
enum Eol {
    Found {
        end: usize,
        next: usize,
    },
    /// No terminator yet.
    Partial,
}

impl<'b> Cursor<'b> {
    /// Finds the end of the line starting at `pos`.
    fn line(&self) -> Result<Eol, Error> {
        let rest = &self.buf[self.pos..];
        match rest.iter().position(|&b| b == b'\n') {
            Some(i) => {
                let end = self.pos + i;
                let body_end = if i > 0 && rest[i - 1] == b'\r' {
                    end - 1
                } else {
                    end
                };
                if self.buf[self.pos..body_end].contains(&b'\r') {
                    return Err(Error::Malformed("bare CR in a line"));
                }
                Ok(Eol::Found {
                    end: body_end,
                    next: end + 1,
                })
            }
            None => {
                // A CR may only be followed by LF, which may still come.
                let n = rest.len();
                if rest.iter().take(n.saturating_sub(1)).any(|&b| b == b'\r') {
                    return Err(Error::Malformed("bare CR in a line"));
                }
                Ok(Eol::Partial)
            }
        }
    }
}

/// Parses a request line from `line`.
fn request_line(line: &[u8]) -> Result<(&str, &str, Version), Error> {
    let sp1 = line
        .iter()
        .position(|&b| b == b' ')
        .ok_or(Error::Malformed("request line without spaces"))?;
    let method = &line[..sp1];
    if method.is_empty() || !method.iter().all(|&b| is_tchar(b)) {
        return Err(Error::Malformed("invalid method"));
    }
    let rest = &line[sp1 + 1..];
    let sp2 = rest
        .iter()
        .position(|&b| b == b' ')
        .ok_or(Error::Malformed("request line without a version"))?;
    let target = &rest[..sp2];
    if target.is_empty() || !target.iter().all(|&b| is_target_byte(b)) {
        return Err(Error::Malformed("invalid request target"));
    }
    let version = match &rest[sp2 + 1..] {
        b"HTTP/1.1" => Version::Http11,
        b"HTTP/1.0" => Version::Http10,
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            return Err(Error::Version);
        }
        _ => return Err(Error::Malformed("invalid HTTP version")),
    };
    // Every byte was checked to be ASCII.
    let method = std::str::from_utf8(method).map_err(|_| Error::Malformed("invalid method"))?;
    let target =
        std::str::from_utf8(target).map_err(|_| Error::Malformed("invalid request target"))?;
    Ok((method, target, version))
}

/// Parses a header field line.
fn header_line(line: &[u8]) -> Result<Header<'_>, Error> {
    if matches!(line.first(), Some(b' ' | b'\t')) {
        return Err(Error::Malformed("obsolete line folding"));
    }
    let colon = line
        .iter()
        .position(|&b| b == b':')
        .ok_or(Error::Malformed("header field without a colon"))?;
    let name = &line[..colon];
    if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
        return Err(Error::Malformed("invalid header field name"));
    }
    let mut value = &line[colon + 1..];
    while let [b' ' | b'\t', rest @ ..] = value {
        value = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = value {
        value = rest;
    }
    if !value.iter().all(|&b| is_value_byte(b)) {
        return Err(Error::Malformed("invalid byte in a header field value"));
    }
    let name = std::str::from_utf8(name).map_err(|_| Error::Malformed("invalid header name"))?;
    Ok(Header { name, value })
}

/// Splits a comma-separated field value into trimmed, non-empty elements.
fn list(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim)
        .filter(|e| !e.is_empty())
}

/// Parses a `Content-Length` value (a list of equal lengths is allowed,
/// RFC 9110 §8.6).
fn content_length(value: &[u8], seen: Option<u64>) -> Result<u64, Error> {
    let mut found = seen;
    let mut any = false;
    for e in value.split(|&b| b == b',') {
        let e = trim(e);
        if e.is_empty() || e.len() > 19 || !e.iter().all(u8::is_ascii_digit) {
            return Err(Error::Malformed("invalid Content-Length"));
        }
        let n = e.iter().fold(0u64, |n, &d| n * 10 + u64::from(d - b'0'));
        if found.is_some_and(|f| f != n) {
            return Err(Error::Malformed("conflicting Content-Length values"));
        }
        found = Some(n);
        any = true;
    }
    match (any, found) {
        (true, Some(n)) => Ok(n),
        _ => Err(Error::Malformed("invalid Content-Length")),
    }
}

fn trim(mut e: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = e {
        e = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = e {
        e = rest;
    }
    e
}

/// Checks what is there of an incomplete head, so that garbage is refused
/// at once instead of when the limit is reached.
fn check_partial(buf: &[u8], start: usize) -> Result<(), Error> {
    if !buf.iter().all(|&b| is_head_byte(b)) {
        return Err(Error::Malformed("invalid byte in the request head"));
    }
    // The method, as far as it goes.
    let line = &buf[start..];
    let method_end = line
        .iter()
        .position(|&b| !is_tchar(b))
        .unwrap_or(line.len());
    match line.get(method_end) {
        None => Ok(()),
        Some(b' ') if method_end > 0 => Ok(()),
        Some(b'\r' | b'\n') if method_end == 0 => Ok(()),
        Some(_) => Err(Error::Malformed("invalid method")),
    }
}

/// Parses the request head at the start of `buf`, filling `headers`.
///
/// `max_head` caps the head's length: a head that has no end within
/// `max_head` bytes is [`Error::TooLarge`] (so a `buf` of at least
/// `max_head` bytes never yields [`Status::Partial`]).
///
/// # Errors
/// See [`Error`]: [`Error::Malformed`] (400), [`Error::TooLarge`] and
/// [`Error::TooManyHeaders`] (431), [`Error::Version`] (505),
/// [`Error::UnsupportedCoding`] (501).
pub fn parse_request<'h, 'b>(
    buf: &'b [u8],
    headers: &'h mut [Header<'b>],
    max_head: usize,
) -> Result<Status<Request<'h, 'b>>, Error> {
    let limit = buf.len().min(max_head);
    let mut c = Cursor {
        buf: &buf[..limit],
        pos: 0,
    };
    let partial = |c: &Cursor<'b>, start: usize| {
        if buf.len() >= max_head {
            return Err(Error::TooLarge);
        }
        check_partial(c.buf, start)?;
        Ok(Status::Partial)
    };
    // Empty lines before the request line (RFC 9112 §2.2).
    let (line_end, next) = loop {
        match c.line()? {
            Eol::Partial => return partial(&c, c.pos),
            Eol::Found { end, next } if end == c.pos => c.pos = next,
            Eol::Found { end, next } => break (end, next),
        }
    };
    let start = c.pos;
    let (method, target, version) = request_line(&c.buf[start..line_end])?;
    c.pos = next;
    let mut n = 0;
    loop {
        let (end, next) = match c.line()? {
            Eol::Partial => return partial(&c, start),
            Eol::Found { end, next } => (end, next),
        };
        let line = &c.buf[c.pos..end];
        c.pos = next;
        if line.is_empty() {
            break;
        }
        let h = header_line(line)?;
        let slot = headers.get_mut(n).ok_or(Error::TooManyHeaders)?;
        *slot = h;
        n += 1;
    }
    let head_len = c.pos;
    let headers = &headers[..n];

    let mut length = None;
    // (codings, whether the last is chunked, whether chunked came earlier)
    let mut te: Option<(usize, bool, bool)> = None;
    let mut close = false;
    let mut keep_alive = false;
    let mut hosts = 0;
    for h in headers {
        let name = h.name;
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(content_length(h.value, length)?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            // Codings accumulate over repeated fields, in order.
            let (count, last_chunked, chunked_before) = te.get_or_insert((0usize, false, false));
            for coding in list(h.value) {
                *chunked_before |= *last_chunked;
                *last_chunked = coding.eq_ignore_ascii_case(b"chunked");
                *count += 1;
            }
        } else if name.eq_ignore_ascii_case("connection") {
            for opt in list(h.value) {
                if opt.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if opt.eq_ignore_ascii_case(b"keep-alive") {
                    keep_alive = true;
                }
            }
        } else if name.eq_ignore_ascii_case("host") {
            hosts += 1;
        }
    }
    let body = match (te, length) {
        (Some(_), Some(_)) => {
            return Err(Error::Malformed(
                "both Transfer-Encoding and Content-Length",
            ));
        }
        (Some(_), None) if version == Version::Http10 => {
            return Err(Error::Malformed("Transfer-Encoding in an HTTP/1.0 request"));
        }
        (Some((0, _, _)), None) => return Err(Error::Malformed("empty Transfer-Encoding")),
        (Some((_, false, _)), None) => {
            return Err(Error::Malformed("the last transfer coding is not chunked"));
        }
        (Some((_, true, true)), None) => {
            return Err(Error::Malformed("chunked applied more than once"));
        }
        (Some((1, true, false)), None) => Body::Chunked,
        (Some(_), None) => return Err(Error::UnsupportedCoding),
        (None, Some(0)) | (None, None) => Body::None,
        (None, Some(n)) => Body::Length(n),
    };
    if version == Version::Http11 && hosts != 1 {
        return Err(Error::Malformed(if hosts == 0 {
            "HTTP/1.1 request without Host"
        } else {
            "more than one Host"
        }));
    }
    let keep_alive = !close && (version == Version::Http11 || keep_alive);
    Ok(Status::Complete(Request {
        method,
        target,
        version,
        headers,
        body,
        keep_alive,
        head_len,
    }))
}

/// Appends a response head (status line, `Content-Length`, `Connection`
/// when it needs saying, the given extra header lines, each ending in
/// CRLF) and the body to `out`. For `HEAD` requests pass `with_body =
/// false`: the length is still announced.
pub fn write_response(
    out: &mut Vec<u8>,
    status: u16,
    extra_headers: &str,
    body: &[u8],
    with_body: bool,
    keep_alive: bool,
    version: Version,
) {
    use std::io::Write;
    let _ = write!(
        out,
        "HTTP/1.1 {status} {}\r\nContent-Length: {}\r\n{extra_headers}",
        reason(status),
        body.len()
    );
    match (keep_alive, version) {
        (false, _) => out.extend_from_slice(b"Connection: close\r\n"),
        (true, Version::Http10) => out.extend_from_slice(b"Connection: keep-alive\r\n"),
        (true, Version::Http11) => {}
    }
    out.extend_from_slice(b"\r\n");
    if with_body {
        out.extend_from_slice(body);
    }
}

/// The most bytes of chunk extensions on one chunk-size line.
pub const MAX_CHUNK_EXT: u32 = 4096;
/// The most bytes of trailer fields after a chunked body.
pub const MAX_TRAILER: u32 = 8192;

/// Discards a request body as it arrives (RFC 9112 §6.3, §7.1).
///
/// Made from the head's [`Body`]; [`skip`](BodySkipper::skip) is given
/// whatever input follows and says how much of it was body, until
/// [`is_done`](BodySkipper::is_done). A chunked body's framing is checked
/// strictly as it streams: hexadecimal sizes of at most 16 digits, chunk
/// lines and data ended by CRLF (a bare LF is refused: lenient chunk
/// parsing is a request-smuggling vector), extensions and trailer fields
/// bounded by [`MAX_CHUNK_EXT`] and [`MAX_TRAILER`], no control characters
/// in either. Nothing is buffered: the state is a few integers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BodySkipper {
    state: Skip,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Skip {
    Done,
    /// Bytes of a `Content-Length` body still to come.
    Length(u64),
    /// In a chunk-size: its value and digit count so far.
    Size {
        value: u64,
        digits: u8,
    },
    /// In a chunk's extensions, after its size.
    Ext {
        value: u64,
        len: u32,
    },
    /// After a chunk line's CR.
    SizeLf {
        value: u64,
    },
    /// Chunk data bytes still to come.
    Data(u64),
    /// The CR, then the LF, after chunk data.
    DataCr,
    DataLf,
    /// In the trailer section: the current line's length, the total.
    Trailer {
        line: u32,
        total: u32,
    },
    /// After a trailer line's CR; `last`: that line was empty.
    TrailerLf {
        last: bool,
        total: u32,
    },
}

impl BodySkipper {
    /// A skipper for the body a head announced.
    pub const fn new(body: Body) -> BodySkipper {
        let state = match body {
            Body::None | Body::Length(0) => Skip::Done,
            Body::Length(n) => Skip::Length(n),
            Body::Chunked => Skip::Size {
                value: 0,
                digits: 0,
            },
        };
        BodySkipper { state }
    }

    /// Whether the whole body has gone by.
    pub const fn is_done(&self) -> bool {
        matches!(self.state, Skip::Done)
    }

    /// Consumes the body's part of `input` (a prefix of it): returns its
    /// length. Once done, returns 0.
    ///
    /// # Errors
    /// [`Error::Malformed`] for broken chunk framing, [`Error::TooLarge`]
    /// for extensions or trailers beyond their limits. The skipper should
    /// then be dropped with the connection.
    pub fn skip(&mut self, input: &[u8]) -> Result<usize, Error> {
        let mut i = 0;
        while i < input.len() {
            match &mut self.state {
                Skip::Done => break,
                Skip::Length(n) | Skip::Data(n) => {
                    let take =
                        usize::try_from(*n).map_or(input.len() - i, |n| n.min(input.len() - i));
                    i += take;
                    *n -= take as u64;
                    if *n == 0 {
                        self.state = match self.state {
                            Skip::Length(_) => Skip::Done,
                            _ => Skip::DataCr,
                        };
                    }
                    continue;
                }
                _ => {}
            }
            let b = input[i];
            i += 1;
            self.state = match self.state {
                Skip::Size { value, digits } => match b {
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                        if digits == 16 {
                            return Err(Error::Malformed("chunk size over 16 hex digits"));
                        }
                        let d = (b as char).to_digit(16).expect("a hex digit");
                        Skip::Size {
                            value: value << 4 | u64::from(d),
                            digits: digits + 1,
                        }
                    }
                    _ if digits == 0 => return Err(Error::Malformed("chunk size expected")),
                    b';' | b' ' | b'\t' => Skip::Ext { value, len: 1 },
                    b'\r' => Skip::SizeLf { value },
                    _ => return Err(Error::Malformed("bad byte after a chunk size")),
                },
                Skip::Ext { value, len } => match b {
                    b'\r' => Skip::SizeLf { value },
                    b'\t' | b' '..=b'~' | 0x80..=0xff if len < MAX_CHUNK_EXT => Skip::Ext {
                        value,
                        len: len + 1,
                    },
                    b'\t' | b' '..=b'~' | 0x80..=0xff => return Err(Error::TooLarge),
                    _ => return Err(Error::Malformed("control character in a chunk extension")),
                },
                Skip::SizeLf { value } => match (b, value) {
                    (b'\n', 0) => Skip::Trailer { line: 0, total: 0 },
                    (b'\n', n) => Skip::Data(n),
                    _ => return Err(Error::Malformed("chunk line not ended by CRLF")),
                },
                Skip::DataCr if b == b'\r' => Skip::DataLf,
                Skip::DataLf if b == b'\n' => Skip::Size {
                    value: 0,
                    digits: 0,
                },
                Skip::DataCr | Skip::DataLf => {
                    return Err(Error::Malformed("chunk data not followed by CRLF"));
                }
                Skip::Trailer { line, total } => match b {
                    b'\r' => Skip::TrailerLf {
                        last: line == 0,
                        total,
                    },
                    b'\t' | b' '..=b'~' | 0x80..=0xff if total < MAX_TRAILER => Skip::Trailer {
                        line: line + 1,
                        total: total + 1,
                    },
                    b'\t' | b' '..=b'~' | 0x80..=0xff => return Err(Error::TooLarge),
                    _ => return Err(Error::Malformed("control character in a trailer field")),
                },
                Skip::TrailerLf { last, total } => match b {
                    b'\n' if last => Skip::Done,
                    b'\n' => Skip::Trailer { line: 0, total },
                    _ => return Err(Error::Malformed("trailer line not ended by CRLF")),
                },
                Skip::Done | Skip::Length(_) | Skip::Data(_) => unreachable!("handled above"),
            };
        }
        Ok(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(buf: &[u8]) -> Result<Status<(Request<'static, 'static>, usize)>, Error> {
        // Leak for convenient 'static borrows in tests.
        let buf: &'static [u8] = Box::leak(buf.to_vec().into_boxed_slice());
        let headers: &'static mut [Header<'static>] =
            Box::leak(vec![Header::EMPTY; 16].into_boxed_slice());
        parse_request(buf, headers, MAX_HEAD).map(|s| match s {
            Status::Complete(r) => Status::Complete((r, r.headers.len())),
            Status::Partial => Status::Partial,
        })
    }

    fn complete(buf: &[u8]) -> Request<'static, 'static> {
        match parse(buf) {
            Ok(Status::Complete((r, _))) => r,
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(buf)),
        }
    }

    fn error(buf: &[u8]) -> Error {
        match parse(buf) {
            Err(e) => e,
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(buf)),
        }
    }

    #[test]
    fn simple_get() {
        let r = complete(b"GET /hello HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\nrest");
        assert_eq!(r.method, "GET");
        assert_eq!(r.target, "/hello");
        assert_eq!(r.version, Version::Http11);
        assert_eq!(r.headers.len(), 2);
        assert_eq!(r.header("accept"), Some(&b"*/*"[..]));
        assert_eq!(r.body, Body::None);
        assert!(r.keep_alive);
        assert_eq!(r.head_len, 45);
    }

    #[test]
    fn bare_lf_and_leading_empty_lines() {
        let r = complete(b"\r\n\nGET / HTTP/1.0\nHost:  a b \t\n\n");
        assert_eq!(r.header("host"), Some(&b"a b"[..]));
        assert_eq!(r.version, Version::Http10);
        assert!(!r.keep_alive);
        assert_eq!(r.head_len, 32);
    }

    #[test]
    fn partial_heads() {
        let full = b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n";
        for i in 0..full.len() {
            assert_eq!(
                parse(&full[..i]),
                Ok(Status::Partial),
                "prefix {i}: {:?}",
                String::from_utf8_lossy(&full[..i])
            );
        }
        assert_eq!(complete(full).body, Body::Length(5));
    }

    #[test]
    fn keep_alive_decisions() {
        assert!(!complete(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n").keep_alive);
        assert!(
            !complete(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Close\r\n\r\n")
                .keep_alive
        );
        assert!(complete(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive);
        assert!(complete(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\n\r\n").keep_alive);
    }

    #[test]
    fn content_length_rules() {
        let r = complete(
            b"PUT / HTTP/1.1\r\nHost: h\r\nContent-Length: 7, 7\r\nContent-Length: 7\r\n\r\n",
        );
        assert_eq!(r.body, Body::Length(7));
        assert_eq!(
            complete(b"PUT / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n").body,
            Body::None
        );
        for bad in [
            &b"PUT / HTTP/1.1\r\nHost: h\r\nContent-Length: 7\r\nContent-Length: 8\r\n\r\n"[..],
            b"PUT / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n",
            b"PUT / HTTP/1.1\r\nHost: h\r\nContent-Length: \r\n\r\n",
            b"PUT / HTTP/1.1\r\nHost: h\r\nContent-Length: 1,\r\n\r\n",
            b"PUT / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999\r\n\r\n",
            b"PUT / HTTP/1.1\r\nHost: h\r\nContent-Length: 0x10\r\n\r\n",
        ] {
            assert!(
                matches!(error(bad), Error::Malformed(_)),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn transfer_encoding_rules() {
        assert_eq!(
            complete(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n").body,
            Body::Chunked
        );
        assert_eq!(
            error(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
            Error::UnsupportedCoding
        );
        for bad in [
            &b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: ,\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
        ] {
            assert!(matches!(error(bad), Error::Malformed(_)), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn malformed_heads() {
        for bad in [
            &b"GET\r\n\r\n"[..],
            b"GET /\r\n\r\n",
            b"GET  / HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET / HTTP/1.1 \r\nHost: h\r\n\r\n",
            b"G(T / HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\n folded\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost : h\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost\r\n\r\n",
            b"GET / HTTP/1.1\r\n: h\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\x01\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\rX: y\r\n\r\n",
            b"GET / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            b"GET / http/1.1\r\nHost: h\r\n\r\n",
            b"GET /\x7f HTTP/1.1\r\nHost: h\r\n\r\n",
        ] {
            assert!(
                matches!(error(bad), Error::Malformed(_)),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(error(b"GET / HTTP/2.0\r\n\r\n"), Error::Version);
        assert_eq!(error(b"GET / HTTP/2.0\r\n\r\n").status(), 505);
    }

    #[test]
    fn garbage_is_refused_before_the_head_ends() {
        assert!(matches!(
            error(b"\x16\x03\x01\x02\x00"),
            Error::Malformed(_)
        ));
        assert!(matches!(error(b"GE(T"), Error::Malformed(_)));
        assert!(matches!(error(b" GET"), Error::Malformed(_)));
        assert_eq!(parse(b"GET /partial"), Ok(Status::Partial));
    }

    #[test]
    fn size_and_count_limits() {
        let mut big = b"GET / HTTP/1.1\r\nHost: h\r\nX: ".to_vec();
        big.resize(MAX_HEAD, b'a');
        assert_eq!(error(&big), Error::TooLarge);
        assert_eq!(error(&big).status(), 431);
        big.truncate(MAX_HEAD - 1);
        assert_eq!(parse(&big), Ok(Status::Partial));
        // A complete head that ends beyond the limit is too large as well.
        big.extend_from_slice(b"\r\n\r\n");
        assert_eq!(error(&big), Error::TooLarge);

        let mut many = b"GET / HTTP/1.1\r\nHost: h\r\n".to_vec();
        for i in 0..16 {
            many.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(error(&many), Error::TooManyHeaders);
    }

    #[test]
    fn response_writer() {
        let mut out = Vec::new();
        write_response(&mut out, 200, "", b"hi", true, true, Version::Http11);
        assert_eq!(out, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi");
        out.clear();
        write_response(&mut out, 431, "", b"", false, false, Version::Http11);
        assert_eq!(
            out,
            b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        out.clear();
        write_response(
            &mut out,
            200,
            "X: y\r\n",
            b"hi",
            false,
            true,
            Version::Http10,
        );
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX: y\r\nConnection: keep-alive\r\n\r\n"
        );
    }

    /// Feeds `input` to a skipper in pieces cut at `cuts`; the result of
    /// the first failing piece, or the total consumed.
    fn skip_in_pieces(body: Body, input: &[u8], cuts: &[usize]) -> (Result<usize, Error>, bool) {
        let mut k = BodySkipper::new(body);
        let mut at = 0;
        let mut total = 0;
        let mut bounds: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
        bounds.push(input.len());
        bounds.sort_unstable();
        for end in bounds {
            if end < at {
                continue;
            }
            match k.skip(&input[at..end]) {
                Ok(n) => {
                    total += n;
                    if n < end - at {
                        // The body ended inside this piece.
                        return (Ok(total), k.is_done());
                    }
                }
                Err(e) => return (Err(e), false),
            }
            at = end;
        }
        (Ok(total), k.is_done())
    }

    #[test]
    fn chunked_bodies_are_skipped_up_to_the_next_request() {
        let body = b"5\r\nhello\r\n1A;name=\"v\" ; x\r\nabcdefghijklmnopqrstuvwxyz\r\n\
                     0\r\nExpires: never\r\nX-Sum: 1\r\n\r\n";
        let mut input = body.to_vec();
        input.extend_from_slice(b"GET / HTTP/1.1\r\n");
        let mut k = BodySkipper::new(Body::Chunked);
        assert_eq!(k.skip(&input), Ok(body.len()));
        assert!(k.is_done());
        assert_eq!(k.skip(b"more"), Ok(0));
        // No trailer, upper-case hex, leading zeros.
        let mut k = BodySkipper::new(Body::Chunked);
        let body = b"000A\r\n0123456789\r\n0\r\n\r\n";
        assert_eq!(k.skip(body), Ok(body.len()));
        assert!(k.is_done());
    }

    #[test]
    fn lengths_and_empty_bodies() {
        let mut k = BodySkipper::new(Body::Length(5));
        assert_eq!(k.skip(b"abc"), Ok(3));
        assert!(!k.is_done());
        assert_eq!(k.skip(b"deGET"), Ok(2));
        assert!(k.is_done());
        assert!(BodySkipper::new(Body::None).is_done());
        assert!(BodySkipper::new(Body::Length(0)).is_done());
        let mut k = BodySkipper::new(Body::Length(u64::MAX));
        assert_eq!(k.skip(&[0; 100]), Ok(100));
        assert!(!k.is_done());
    }

    #[test]
    fn broken_chunk_framing_is_refused() {
        let cases: &[(&[u8], u16)] = &[
            (b"5\nhello\r\n0\r\n\r\n", 400),   // bare LF after the size
            (b"5\r\nhello\n0\r\n\r\n", 400),   // bare LF after data
            (b"5\r\nhelloX\r\n", 400),         // data longer than its size
            (b"\r\n", 400),                    // no size
            (b";x\r\n", 400),                  // extension without a size
            (b"g\r\n", 400),                   // not hex
            (b"-1\r\n", 400),                  // not hex
            (b"10000000000000000\r\n", 400),   // 17 digits
            (b"1;\x01\r\n", 400),              // control character
            (b"0\r\nX: a\nY: b\r\n\r\n", 400), // bare LF in the trailer
            (b"0\r\nX: \x7f\r\n\r\n", 400),    // DEL in the trailer
        ];
        for (input, status) in cases {
            let mut k = BodySkipper::new(Body::Chunked);
            let got = k.skip(input).map_err(|e| e.status());
            assert_eq!(got, Err(*status), "{:?}", String::from_utf8_lossy(input));
        }
        let mut long_ext = b"1;".to_vec();
        long_ext.resize(2 + MAX_CHUNK_EXT as usize, b'a');
        long_ext.extend_from_slice(b"\r\n");
        let mut k = BodySkipper::new(Body::Chunked);
        assert_eq!(k.skip(&long_ext), Err(Error::TooLarge));
        let mut long_trailer = b"0\r\n".to_vec();
        for _ in 0..=MAX_TRAILER / 9 {
            long_trailer.extend_from_slice(b"X: 123456\r\n");
        }
        let mut k = BodySkipper::new(Body::Chunked);
        assert_eq!(k.skip(&long_trailer), Err(Error::TooLarge));
        // 16 digits is the most, and fine.
        let mut k = BodySkipper::new(Body::Chunked);
        assert_eq!(k.skip(b"0000000000000001\r\nx\r\n"), Ok(21));
        assert!(!k.is_done(), "the last chunk is still to come");
    }

    fn chunked(chunks: &[(Vec<u8>, String)], trailer: &[String]) -> Vec<u8> {
        let mut out = Vec::new();
        for (data, ext) in chunks {
            out.extend_from_slice(format!("{:x}{ext}\r\n", data.len()).as_bytes());
            out.extend_from_slice(data);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"0\r\n");
        for t in trailer {
            out.extend_from_slice(t.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out
    }

    proptest::proptest! {
        /// A valid chunked body, cut anywhere, is skipped to its exact end,
        /// and the next request's bytes are left alone.
        #[test]
        fn chunked_bodies_split_anywhere(
            chunks in proptest::collection::vec(
                (proptest::collection::vec(proptest::prelude::any::<u8>(), 1..300), "(;[a-z]{1,8}(=[a-z0-9]{0,8})?){0,2}"),
                0..6),
            trailer in proptest::collection::vec("[A-Za-z-]{1,10}: [ -~]{0,20}", 0..3),
            cuts in proptest::collection::vec(0usize..4000, 0..8),
        ) {
            let body = chunked(&chunks, &trailer);
            let mut input = body.clone();
            input.extend_from_slice(b"GET / HTTP/1.1\r\n");
            let (got, done) = skip_in_pieces(Body::Chunked, &input, &cuts);
            proptest::prop_assert_eq!(got, Ok(body.len()));
            proptest::prop_assert!(done);
        }

        /// Any bytes, cut anywhere: the same answer as in one piece.
        #[test]
        fn pieces_do_not_change_the_answer(
            input in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::sample::select(b"0123456789abcdefABCDEF;= \t\r\nxyz:".to_vec()),
                    proptest::prelude::any::<u8>(),
                ],
                0..200),
            cuts in proptest::collection::vec(0usize..200, 0..8),
        ) {
            let whole = skip_in_pieces(Body::Chunked, &input, &[]);
            let pieces = skip_in_pieces(Body::Chunked, &input, &cuts);
            proptest::prop_assert_eq!(whole, pieces);
        }
    }
}
