//! Costs on the TLS side of the hot path: classifying a tunnel's first bytes (a real rustls
//! ClientHello parsed by `sni::parse`) and one password check (argon2id with the crate's
//! default parameters, bcrypt at cost 10), which is why successful checks are remembered.
//! Inputs are built outside the timed loops.
//!
//! `cargo bench --bench tls -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, RootCertStore};

use egressd::proxy::auth::verify_password;
use egressd::proxy::sni;

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

fn sni_parse(c: &mut Criterion) {
    let hello = client_hello("www.facebook.com");
    let half = hello[..hello.len() / 2].to_vec();
    c.bench_function("sni::parse complete ClientHello", |b| {
        b.iter(|| sni::parse(black_box(&hello)))
    });
    c.bench_function("sni::parse half a ClientHello", |b| {
        b.iter(|| sni::parse(black_box(&half)))
    });
    c.bench_function("sni::parse not TLS", |b| {
        b.iter(|| sni::parse(black_box(b"GET / HTTP/1.1\r\n")))
    });
}

fn passwords(c: &mut Criterion) {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let salt = SaltString::encode_b64(b"bench-salt-bytes").unwrap();
    let argon = argon2::Argon2::default()
        .hash_password(b"correct horse", &salt)
        .unwrap()
        .to_string();
    let bc = bcrypt::hash("correct horse", 10).unwrap();
    let mut g = c.benchmark_group("password check");
    g.sample_size(10);
    g.bench_function("argon2id default", |b| {
        b.iter(|| verify_password(black_box(&argon), "correct horse"))
    });
    g.bench_function("bcrypt cost 10", |b| {
        b.iter(|| verify_password(black_box(&bc), "correct horse"))
    });
    g.finish();
}

criterion_group!(benches, sni_parse, passwords);
criterion_main!(benches);
