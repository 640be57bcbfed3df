//! `evmux_net::http::parse_request` on arbitrary bytes.
//!
//! The first byte picks the number of header slots (0–32), the second the
//! head limit (the default 8 KiB, or 0–252 bytes to reach `TooLarge`); the
//! rest is the buffer. The parser must never panic, and:
//!
//! - a `Complete` head lies within the input: `head_len` is at most the
//!   buffer's length and the limit, ends in an empty line, and the method,
//!   target and every header name and value are slices of the head that
//!   follow the grammar (tokens, visible ASCII, trimmed values without
//!   control bytes); HTTP/1.1 has exactly one `Host`; the body framing and
//!   keep-alive agree with the header fields;
//! - `Partial` only below the limit, `TooLarge` only at or above it;
//! - prefixes agree with the whole (the parser sees bytes as they arrive):
//!   a prefix that parses `Complete` gives the same head as the whole
//!   buffer, a prefix that is refused means the whole buffer is refused
//!   too, and the head of a `Complete` buffer, cut one byte short, is
//!   `Partial`.
//! - the body after a `Complete` head, given to a `BodySkipper` whole and
//!   in two pieces cut at every point tried above, gives the same answer
//!   (consumed length and end, or the same error), and never more than the
//!   input.
#![no_main]

use evmux_net::http::{
    Body, BodySkipper, Error, Header, MAX_HEAD, Request, Status, Version, parse_request,
};
use libfuzzer_sys::fuzz_target;

/// What a parse gave, owned, for comparing a prefix with the whole.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Complete {
        method: Vec<u8>,
        target: Vec<u8>,
        version: Version,
        headers: Vec<(Vec<u8>, Vec<u8>)>,
        body: Body,
        keep_alive: bool,
        head_len: usize,
    },
    Partial,
    Refused(Error),
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_value_byte(b: u8) -> bool {
    b == b'\t' || (b >= 0x20 && b != 0x7f)
}

/// Whether `part` is a slice of `whole`.
fn within(whole: &[u8], part: &[u8]) -> bool {
    let w = whole.as_ptr() as usize;
    let p = part.as_ptr() as usize;
    p >= w && p + part.len() <= w + whole.len()
}

fn list_has(value: &[u8], word: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|e| e.trim_ascii().eq_ignore_ascii_case(word))
}

/// Checks a complete head against the buffer it came from.
fn check_complete(buf: &[u8], max_head: usize, slots: usize, r: &Request<'_, '_>) {
    assert!(
        r.head_len <= buf.len() && r.head_len <= max_head,
        "head_len {}",
        r.head_len
    );
    let head = &buf[..r.head_len];
    assert!(
        head.ends_with(b"\n\n") || head.ends_with(b"\n\r\n"),
        "the head does not end in an empty line"
    );
    assert!(
        r.headers.len() <= slots,
        "{} headers in {slots} slots",
        r.headers.len()
    );

    assert!(within(head, r.method.as_bytes()), "method outside the head");
    assert!(
        !r.method.is_empty() && r.method.bytes().all(is_tchar),
        "method {:?}",
        r.method
    );
    assert!(within(head, r.target.as_bytes()), "target outside the head");
    assert!(
        !r.target.is_empty() && r.target.bytes().all(|b| b > 0x20 && b < 0x7f),
        "target {:?}",
        r.target
    );
    let mut hosts = 0;
    for h in r.headers {
        assert!(
            within(head, h.name.as_bytes()),
            "header name outside the head"
        );
        assert!(within(head, h.value), "header value outside the head");
        assert!(
            !h.name.is_empty() && h.name.bytes().all(is_tchar),
            "name {:?}",
            h.name
        );
        assert!(
            h.value.iter().all(|&b| is_value_byte(b)),
            "value {:?}",
            h.value
        );
        assert!(
            !h.value.starts_with(b" ")
                && !h.value.starts_with(b"\t")
                && !h.value.ends_with(b" ")
                && !h.value.ends_with(b"\t"),
            "untrimmed value {:?}",
            h.value
        );
        if h.name.eq_ignore_ascii_case("host") {
            hosts += 1;
        }
        assert_eq!(
            r.header(h.name).map(<[u8]>::as_ptr),
            r.headers
                .iter()
                .find(|g| g.name.eq_ignore_ascii_case(h.name))
                .map(|g| g.value.as_ptr()),
            "header lookup"
        );
    }
    if r.version == Version::Http11 {
        assert_eq!(hosts, 1, "HTTP/1.1 with {hosts} Host fields");
    }
    let has = |name: &str| r.headers.iter().any(|h| h.name.eq_ignore_ascii_case(name));
    match r.body {
        Body::None => assert!(!has("transfer-encoding"), "Transfer-Encoding but no body"),
        Body::Length(n) => {
            assert!(
                n > 0 && has("content-length") && !has("transfer-encoding"),
                "{:?}",
                r.body
            );
        }
        Body::Chunked => assert!(has("transfer-encoding") && !has("content-length")),
    }
    let close = r
        .headers
        .iter()
        .any(|h| h.name.eq_ignore_ascii_case("connection") && list_has(h.value, b"close"));
    let keep = r
        .headers
        .iter()
        .any(|h| h.name.eq_ignore_ascii_case("connection") && list_has(h.value, b"keep-alive"));
    let expected = !close && (r.version == Version::Http11 || keep);
    assert_eq!(r.keep_alive, expected, "keep_alive");
}

/// Parses `buf` with fresh header slots and checks what does not depend
/// on other prefixes.
fn parse(buf: &[u8], slots: usize, max_head: usize) -> Outcome {
    let mut headers = vec![Header::EMPTY; slots];
    match parse_request(buf, &mut headers, max_head) {
        Ok(Status::Complete(r)) => {
            check_complete(buf, max_head, slots, &r);
            Outcome::Complete {
                method: r.method.as_bytes().to_vec(),
                target: r.target.as_bytes().to_vec(),
                version: r.version,
                headers: r
                    .headers
                    .iter()
                    .map(|h| (h.name.as_bytes().to_vec(), h.value.to_vec()))
                    .collect(),
                body: r.body,
                keep_alive: r.keep_alive,
                head_len: r.head_len,
            }
        }
        Ok(Status::Partial) => {
            assert!(
                buf.len() < max_head,
                "Partial at {} bytes, limit {max_head}",
                buf.len()
            );
            Outcome::Partial
        }
        Err(e) => {
            if e == Error::TooLarge {
                assert!(
                    buf.len() >= max_head,
                    "TooLarge at {} bytes, limit {max_head}",
                    buf.len()
                );
            }
            // The status line a server would send exists.
            assert!(!e.reason().is_empty());
            Outcome::Refused(e)
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let [slots, limit, buf @ ..] = data else {
        return;
    };
    let slots = usize::from(*slots % 33);
    let max_head = if *limit < 192 {
        MAX_HEAD
    } else {
        usize::from(*limit - 192) * 4
    };
    let whole = parse(buf, slots, max_head);

    // Prefix lengths to compare: all of them for short inputs; otherwise
    // both sides of each line end (the first 64) and 32 evenly spaced.
    let mut cuts: Vec<usize> = if buf.len() <= 128 {
        (0..buf.len()).collect()
    } else {
        let mut v: Vec<usize> = buf
            .iter()
            .enumerate()
            .filter(|&(_, &b)| b == b'\n')
            .take(64)
            .flat_map(|(i, _)| [i, i + 1])
            .collect();
        v.extend((0..32).map(|k| k * buf.len() / 32));
        v
    };
    if let Outcome::Complete { head_len, .. } = whole {
        cuts.push(head_len);
        if head_len > 0 {
            cuts.push(head_len - 1);
        }
    }
    cuts.sort_unstable();
    cuts.dedup();

    if let Outcome::Complete { head_len, body, .. } = &whole {
        let rest = &buf[*head_len..];
        let mut one = BodySkipper::new(*body);
        let whole_skip = one.skip(rest).map(|n| (n, one.is_done()));
        if let Ok((n, _)) = whole_skip {
            assert!(n <= rest.len());
        }
        for &cut in &cuts {
            let Some(cut) = cut.checked_sub(*head_len).filter(|&c| c <= rest.len()) else {
                continue;
            };
            let mut two = BodySkipper::new(*body);
            let pieces = two.skip(&rest[..cut]).and_then(|a| {
                if a < cut {
                    return Ok((a, two.is_done()));
                }
                two.skip(&rest[cut..]).map(|b| (a + b, two.is_done()))
            });
            assert_eq!(pieces, whole_skip, "body cut at {cut}");
        }
    }

    for cut in cuts.into_iter().filter(|&c| c <= buf.len()) {
        let part = parse(&buf[..cut], slots, max_head);
        match (&part, &whole) {
            (Outcome::Partial, _) => {}
            (Outcome::Complete { .. }, _) => {
                assert_eq!(part, whole, "prefix of {cut} bytes is a different head");
            }
            (Outcome::Refused(_), Outcome::Refused(_)) => {}
            (Outcome::Refused(e), _) => {
                panic!("prefix of {cut} bytes refused ({e:?}), the whole gave {whole:?}")
            }
        }
        if let Outcome::Complete { head_len, .. } = whole
            && cut + 1 == head_len
        {
            assert_eq!(part, Outcome::Partial, "the head cut one byte short");
        }
    }
});
