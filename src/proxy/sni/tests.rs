//! ClientHellos from a real rustls client, and a seeded fuzz run of truncated and mutated ones.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, RootCertStore};

use super::*;

/// The first flight of a rustls client connecting to `name` (a DNS name or an IP).
fn client_hello(name: &str) -> Vec<u8> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(RootCertStore::empty())
        .with_no_client_auth();
    let server = ServerName::try_from(name.to_owned()).unwrap();
    let mut conn = ClientConnection::new(Arc::new(config), server).unwrap();
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).unwrap();
    }
    out
}

#[test]
fn real_client_hello_gives_its_sni() {
    let hello = client_hello("WWW.Facebook.com");
    assert_eq!(parse(&hello), Parse::Hello(Some("www.facebook.com".into())));
    // Every strict prefix is incomplete, never an error or a wrong answer.
    for cut in 0..hello.len() {
        assert_eq!(
            parse(&hello[..cut]),
            Parse::NeedMore,
            "prefix of {cut} bytes"
        );
    }
}

#[test]
fn byte_by_byte_feeding_finds_the_hello_at_its_last_byte() {
    let hello = client_hello("trickle.example");
    let mut p = HelloParser::default();
    for (i, b) in hello.iter().enumerate() {
        let got = p.feed(std::slice::from_ref(b));
        if i + 1 < hello.len() {
            assert_eq!(got, Parse::NeedMore, "byte {i}");
        } else {
            assert_eq!(got, Parse::Hello(Some("trickle.example".into())));
        }
    }
}

#[test]
fn ip_literal_server_name_means_no_sni() {
    // rustls sends no SNI for an IP; the CONNECT target then decides alone.
    assert_eq!(parse(&client_hello("192.0.2.7")), Parse::Hello(None));
}

#[test]
fn not_tls_and_garbage() {
    assert_eq!(parse(b"GET / HTTP/1.1\r\n"), Parse::NotTls);
    assert_eq!(parse(b"SSH-2.0-OpenSSH_9.6\r\n"), Parse::NotTls);
    assert_eq!(parse(&[]), Parse::NeedMore);
    // A handshake record type with a bogus version and length.
    assert!(matches!(
        parse(&[0x16, 0xff, 0xff, 0xff, 0xff, 0]),
        Parse::Invalid(_)
    ));
}

#[tokio::test]
async fn reader_classifies_and_keeps_the_bytes() {
    let hello = client_hello("example.org");
    let mut input: &[u8] = &hello;
    let (bytes, first) =
        read_first_bytes(&mut input, MAX_HELLO_BYTES, Duration::from_secs(2)).await;
    assert_eq!(
        first,
        FirstBytes::Tls(Some(Host::Name("example.org".into())))
    );
    assert_eq!(
        bytes, hello,
        "everything read is handed back for forwarding"
    );

    let mut input: &[u8] = b"";
    let (_, first) = read_first_bytes(&mut input, MAX_HELLO_BYTES, Duration::from_secs(2)).await;
    assert_eq!(first, FirstBytes::Closed);

    let mut input: &[u8] = &hello[..40];
    let (_, first) = read_first_bytes(&mut input, MAX_HELLO_BYTES, Duration::from_secs(2)).await;
    assert!(matches!(first, FirstBytes::Malformed(_)), "{first:?}");
}

#[tokio::test(start_paused = true)]
async fn reader_is_bounded_in_time_and_size() {
    // A client that sends half a ClientHello and stalls.
    let hello = client_hello("example.org");
    let (mut near, mut far) = tokio::io::duplex(64 * 1024);
    tokio::io::AsyncWriteExt::write_all(&mut far, &hello[..hello.len() / 2])
        .await
        .unwrap();
    let (_, first) = read_first_bytes(&mut near, MAX_HELLO_BYTES, Duration::from_secs(10)).await;
    assert!(matches!(first, FirstBytes::Malformed(_)), "{first:?}");

    // A silent client.
    let (mut near, _far2) = tokio::io::duplex(1024);
    let (_, first) = read_first_bytes(&mut near, MAX_HELLO_BYTES, Duration::from_secs(10)).await;
    assert_eq!(first, FirstBytes::Silent);
    drop(far);

    // A handshake record header that announces a huge record, then endless bytes.
    let mut endless = vec![0x16, 0x03, 0x01, 0x40, 0x00];
    endless.resize(MAX_HELLO_BYTES * 2, 0x01);
    let mut input: &[u8] = &endless;
    let (bytes, first) =
        read_first_bytes(&mut input, MAX_HELLO_BYTES, Duration::from_secs(10)).await;
    assert!(matches!(first, FirstBytes::Malformed(_)), "{first:?}");
    assert!(bytes.len() <= MAX_HELLO_BYTES);
}

/// xorshift64*: a seeded generator, so a failure replays exactly.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One random mutation of a real ClientHello: truncation, bit flips, a corrupted length
/// field, inserted or deleted runs, or a duplicated tail.
fn mutate(rng: &mut Rng, hello: &[u8]) -> Vec<u8> {
    let mut m = hello.to_vec();
    for _ in 0..1 + rng.below(4) {
        match rng.below(6) {
            0 => m.truncate(rng.below(m.len() + 1)),
            1 if !m.is_empty() => {
                let i = rng.below(m.len());
                m[i] ^= 1 << rng.below(8);
            }
            2 if m.len() > 9 => {
                // Record length (3..5), handshake length (6..9) or anywhere: set a random byte.
                let i = [3, 4, 6, 7, 8, rng.below(m.len())][rng.below(6)];
                m[i] = rng.next() as u8;
            }
            3 => {
                let at = rng.below(m.len() + 1);
                let run: Vec<u8> = (0..rng.below(64)).map(|_| rng.next() as u8).collect();
                m.splice(at..at, run);
            }
            4 if !m.is_empty() => {
                let at = rng.below(m.len());
                let end = (at + rng.below(32)).min(m.len());
                m.drain(at..end);
            }
            _ => {
                let from = rng.below(m.len() + 1);
                let tail = m[from..].to_vec();
                m.extend_from_slice(&tail);
            }
        }
    }
    m
}

#[tokio::test]
async fn fuzzed_client_hellos_never_panic_or_hang() {
    let hellos = [
        client_hello("www.facebook.com"),
        client_hello("a.b.example"),
    ];
    let mut rng = Rng(0x5eed_2026_0005);
    let mut seen = [0usize; 5];
    let run = async {
        for i in 0..4000 {
            let m = mutate(&mut rng, &hellos[i % 2]);
            match parse(&m) {
                Parse::NeedMore => seen[0] += 1,
                Parse::Hello(_) => seen[1] += 1,
                Parse::NotTls => seen[2] += 1,
                Parse::Invalid(_) => seen[3] += 1,
            }
            // The same bytes fed in random pieces: no panic, and feeding stops at a verdict.
            let mut p = HelloParser::default();
            let mut rest: &[u8] = &m;
            while !rest.is_empty() {
                let n = 1 + rng.below(rest.len().min(300));
                let (piece, tail) = rest.split_at(n);
                rest = tail;
                if p.feed(piece) != Parse::NeedMore {
                    break;
                }
            }
            // The reader over the same bytes: a finite input always ends in a verdict.
            let mut input: &[u8] = &m;
            let (bytes, _) =
                read_first_bytes(&mut input, MAX_HELLO_BYTES, Duration::from_millis(200)).await;
            assert!(bytes.len() <= m.len().min(MAX_HELLO_BYTES));
            seen[4] += 1;
        }
    };
    tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("4000 mutated ClientHellos classified within 60 s");
    // The mutations reach every outcome, so the run exercised more than one code path.
    assert!(seen[..4].iter().all(|n| *n > 0), "{seen:?}");
}
