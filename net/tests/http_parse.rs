//! Property tests of the request-head parser: it never panics, never says
//! `Partial` at the limit, and any split of a valid head (what a socket
//! delivers) parses to the same request once it is complete.

use evmux_net::http::{Body, Error, Header, MAX_HEAD, Status, Version, parse_request};
use proptest::prelude::*;

/// Method, target, head length, body, keep-alive.
type Parsed = (String, String, usize, Body, bool);

fn parse(buf: &[u8], max: usize) -> Result<Option<Parsed>, Error> {
    let mut headers = [Header::EMPTY; 32];
    parse_request(buf, &mut headers, max).map(|s| match s {
        Status::Complete(r) => Some((
            r.method.to_string(),
            r.target.to_string(),
            r.head_len,
            r.body,
            r.keep_alive,
        )),
        Status::Partial => None,
    })
}

prop_compose! {
    fn token()(s in "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,12}") -> String { s }
}

prop_compose! {
    fn request()(
        method in prop_oneof![Just("GET".to_string()), Just("POST".to_string()), token()],
        path in "/[a-zA-Z0-9/._~%?=&-]{0,40}",
        v11 in any::<bool>(),
        extra in proptest::collection::vec((token(), "[ -~]{0,30}"), 0..8),
        length in proptest::option::of(0u64..100_000),
        close in any::<bool>(),
        lf_only in any::<bool>(),
    ) -> (Vec<u8>, String, String, Body, bool) {
        let eol = if lf_only { "\n" } else { "\r\n" };
        let mut head = format!("{method} {path} HTTP/1.{}{eol}", u8::from(v11));
        if v11 {
            head.push_str(&format!("Host: example{eol}"));
        }
        for (name, value) in &extra {
            let lower = name.to_ascii_lowercase();
            if ["host", "content-length", "transfer-encoding", "connection"].contains(&lower.as_str()) {
                continue;
            }
            head.push_str(&format!("{name}: {}{eol}", value.trim()));
        }
        if let Some(n) = length {
            head.push_str(&format!("Content-Length: {n}{eol}"));
        }
        if close {
            head.push_str(&format!("Connection: close{eol}"));
        }
        head.push_str(eol);
        let body = match length {
            Some(0) | None => Body::None,
            Some(n) => Body::Length(n),
        };
        (head.into_bytes(), method, path, body, v11 && !close)
    }
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(buf in proptest::collection::vec(any::<u8>(), 0..600), max in 1usize..700) {
        match parse(&buf, max) {
            Ok(None) => prop_assert!(buf.len() < max),
            Ok(Some((_, _, head_len, _, _))) => prop_assert!(head_len <= buf.len().min(max)),
            Err(_) => {}
        }
    }

    #[test]
    fn valid_heads_parse_and_every_prefix_is_partial(
        (head, method, path, body, keep_alive) in request(),
        tail in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut buf = head.clone();
        buf.extend_from_slice(&tail);
        let got = parse(&buf, MAX_HEAD).unwrap().expect("complete");
        prop_assert_eq!(got, (method, path, head.len(), body, keep_alive));
        for i in 0..head.len() {
            prop_assert_eq!(parse(&head[..i], MAX_HEAD), Ok(None), "prefix {}", i);
        }
    }

    #[test]
    fn one_corrupted_byte_is_an_error_or_still_a_request(
        (head, _, _, _, _) in request(),
        at in any::<prop::sample::Index>(),
        byte in prop_oneof![0u8..0x20, Just(0x7f), Just(b' '), Just(b':')],
    ) {
        let mut buf = head.clone();
        let i = at.index(buf.len());
        buf[i] = byte;
        // Whatever it is now, the parser answers without panicking, and a
        // control byte other than HT, CR, LF is always refused.
        let r = parse(&buf, MAX_HEAD);
        if (byte < 0x20 && !matches!(byte, b'\t' | b'\r' | b'\n')) || byte == 0x7f {
            prop_assert!(matches!(r, Err(Error::Malformed(_))), "{:?}", r);
        }
    }
}

#[test]
fn version_is_reported() {
    let mut headers = [Header::EMPTY; 4];
    match parse_request(b"GET / HTTP/1.0\r\n\r\n", &mut headers, MAX_HEAD) {
        Ok(Status::Complete(r)) => assert_eq!(r.version, Version::Http10),
        other => panic!("{other:?}"),
    }
}
