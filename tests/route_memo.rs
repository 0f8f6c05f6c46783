//! A kept-alive client connection remembers its last plain request's route (`RouteMemo`, fast
//! path): the next request to the same target skips parsing it and the shared cache. These
//! tests send every request of a case on ONE connection and check that each answer is what a
//! fresh decision gives: after a reload, after an exception expired, for another path on the
//! same host, and for another user of the same connection.

mod common;

use std::time::Duration;

use common::{origin, ConfigTree};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

async fn get(s: &mut TcpStream, url: &str, extra: &str) -> common::RawResponse {
    let req = format!("GET {url} HTTP/1.1\r\nHost: x\r\n{extra}\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    common::read_response(s).await
}

fn tree(agriculture: &str, egressd_yaml: &str) -> ConfigTree {
    ConfigTree::new(
        egressd_yaml,
        &[
            ("policies/_organization.yaml", common::ORG),
            ("policies/agriculture.yaml", agriculture),
            ("policies/health.yaml", common::HEALTH),
            ("categories/social-media.yaml", common::SOCIAL),
        ],
    )
}

#[tokio::test]
async fn a_reload_applies_to_the_next_request_on_a_kept_alive_connection() {
    let origin = origin::start().await;
    let p = common::start(tree(common::AGRICULTURE, &common::egressd_yaml(""))).await;
    let url = format!("http://allowed.test:{}/", origin.addr.port());
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    for _ in 0..3 {
        assert_eq!(get(&mut s, &url, "").await.status, 200);
    }
    let blocking = format!(
        "{}  - id: no-allowed\n    action: block\n    hosts: [allowed.test]\n    reason: test\n",
        common::AGRICULTURE
    );
    std::fs::write(
        p.tree.dir.path().join("policies/agriculture.yaml"),
        blocking,
    )
    .unwrap();
    assert!(matches!(
        p.server.reload().await,
        egressd::reload::Outcome::Applied { .. }
    ));
    let r = get(&mut s, &url, "").await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.text().contains("no-allowed"), "{}", r.text());
    // And back: the same connection follows every reload.
    std::fs::write(
        p.tree.dir.path().join("policies/agriculture.yaml"),
        common::AGRICULTURE,
    )
    .unwrap();
    assert!(matches!(
        p.server.reload().await,
        egressd::reload::Outcome::Applied { .. }
    ));
    assert_eq!(get(&mut s, &url, "").await.status, 200);
}

#[tokio::test]
async fn an_exception_that_expires_between_two_requests_on_one_connection_ends_there() {
    let origin = origin::start().await;
    let port = origin.addr.port();
    // Social media is blocked at baseline; agriculture's exception for twitter.com ends in 2-3 s
    // (on a whole second: that is what the file says).
    let until =
        chrono::SubsecRound::trunc_subsecs(chrono::Utc::now() + chrono::Duration::seconds(3), 0);
    let agriculture = format!(
        "ministry: agriculture\ndefault: allow\nrules:\n  - id: campaign\n    action: allow\n    \
         domains: [twitter.com]\n    reason: a campaign\n    ticket: CHG-1\n    expires: {}\n",
        until.format("%Y-%m-%dT%H:%M:%SZ")
    );
    let p = common::start(tree(&agriculture, &common::egressd_yaml(""))).await;
    let url = format!("http://twitter.com:{port}/");
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    let first = get(&mut s, &url, "").await;
    assert_eq!(first.status, 200, "{}", first.text());
    // Requests while the exception holds, then past its end on the same connection.
    while chrono::Utc::now() < until - chrono::Duration::milliseconds(300) {
        assert_eq!(get(&mut s, &url, "").await.status, 200);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep_until(tokio::time::Instant::now() + Duration::from_millis(1500)).await;
    assert!(chrono::Utc::now() > until);
    let r = get(&mut s, &url, "").await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.text().contains("social-media"), "{}", r.text());
}

#[tokio::test]
async fn each_request_on_a_connection_is_decided_for_its_own_path_and_user() {
    let origin = origin::start().await;
    let port = origin.addr.port();
    let agriculture = format!(
        "{}  - id: private-area\n    action: block\n    urls: [http://allowed.test/private]\n    \
         reason: not for agriculture\n",
        common::AGRICULTURE
    );
    let users = format!(
        "alice: {{password_hash: \"{}\", ministry: health}}\nbob: {{password_hash: \"{}\", ministry: agriculture}}\n",
        bcrypt::hash("alice-pw", 4).unwrap(),
        bcrypt::hash("bob-pw", 4).unwrap()
    );
    // Credentials on the plain listener, before the standard sources.
    let yaml = common::egressd_yaml("").replace(
        "identity:\n",
        "identity:\n  credentials: users.yaml\n  allow_basic_over_plaintext: true\n",
    );
    let t = tree(&agriculture, &yaml);
    std::fs::write(t.dir.path().join("users.yaml"), users).unwrap();
    let p = common::start(t).await;
    let basic = |user: &str, pw: &str| {
        use base64::Engine as _;
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"));
        format!("Proxy-Authorization: Basic {token}\r\n")
    };
    let (alice, bob) = (basic("alice", "alice-pw"), basic("bob", "bob-pw"));
    let (allowed, other) = (
        format!("http://allowed.test:{port}"),
        format!("http://other.test:{port}"),
    );
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    // (origin, path, credentials, expected status), all on one connection. Agriculture blocks
    // `allowed.test/private`; health allows `allowed.test` (every path) and blocks the rest.
    let steps = [
        (&allowed, "/public", &bob, 200),
        (&allowed, "/private/x", &bob, 403),
        (&allowed, "/public", &bob, 200),
        (&allowed, "/private", &alice, 200),
        (&allowed, "/private", &bob, 403),
        (&other, "/", &bob, 200),
        (&other, "/", &alice, 403),
        (&other, "/", &bob, 200),
    ];
    for (i, (base, path, who, want)) in steps.into_iter().enumerate() {
        let r = get(&mut s, &format!("{base}{path}"), who).await;
        assert_eq!(r.status, want, "step {i}: {base}{path}: {}", r.text());
    }
    // Another host and back on the same connection.
    let r = get(&mut s, &format!("http://www.facebook.com:{port}/"), &bob).await;
    assert_eq!(r.status, 403);
    assert_eq!(get(&mut s, &format!("{other}/"), &bob).await.status, 200);
}

#[tokio::test]
async fn a_remembered_block_answer_follows_its_rule_page_kind_and_snapshot() {
    let origin = origin::start().await;
    let port = origin.addr.port();
    let private = |reason: &str| {
        format!(
            "{}  - id: private-area\n    action: block\n    urls: [http://allowed.test/private]\n    \
             reason: {reason}\n  - id: secret-area\n    action: block\n    \
             urls: [http://allowed.test/secret]\n    reason: secret\n",
            common::AGRICULTURE
        )
    };
    let p = common::start(tree(&private("first reason"), &common::egressd_yaml(""))).await;
    let allowed = format!("http://allowed.test:{port}");
    let html = "Accept: text/html\r\n";
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    // (path or URL, Accept, status, rule named, HTML page), all on one connection: the memo's
    // answer must be the one a fresh decision writes, whatever the previous request got.
    let facebook = format!("http://www.facebook.com:{port}/");
    let steps: [(String, &str, u16, &str, bool); 10] = [
        (
            format!("{allowed}/private"),
            html,
            403,
            "private-area",
            true,
        ),
        (format!("{allowed}/private"), "", 403, "private-area", false),
        (format!("{allowed}/private"), "", 403, "private-area", false),
        (
            format!("{allowed}/private"),
            html,
            403,
            "private-area",
            true,
        ),
        (format!("{allowed}/public"), "", 200, "", false),
        (
            format!("{allowed}/private/x"),
            "",
            403,
            "private-area",
            false,
        ),
        (format!("{allowed}/secret"), "", 403, "secret-area", false),
        (format!("{allowed}/private"), "", 403, "private-area", false),
        (facebook.clone(), "", 403, "social-media", false),
        (format!("{allowed}/private"), "", 403, "private-area", false),
    ];
    for (i, (url, accept, want, rule, page)) in steps.iter().enumerate() {
        let r = get(&mut s, url, accept).await;
        assert_eq!(r.status, *want, "step {i}: {url}: {}", r.text());
        if *want != 403 {
            continue;
        }
        let text = r.text();
        let ctype = r.header("content-type").unwrap_or_default();
        assert_eq!(ctype.starts_with("text/html"), *page, "step {i}: {ctype}");
        assert_eq!(text.contains("<html>"), *page, "step {i}: {text}");
        assert!(text.contains(rule), "step {i}: {text}");
        let host = if url.contains("facebook") {
            "www.facebook.com"
        } else {
            "allowed.test"
        };
        assert!(text.contains(host), "step {i}: {text}");
        let status = r.header("proxy-status").unwrap_or_default();
        assert!(status.contains(rule), "step {i}: {status}");
        assert_eq!(
            r.header("content-length"),
            Some(r.body.len().to_string().as_str())
        );
    }
    // A reload that only rewords the rule: the same connection gets the new page at once.
    std::fs::write(
        p.tree.dir.path().join("policies/agriculture.yaml"),
        private("second reason"),
    )
    .unwrap();
    assert!(matches!(
        p.server.reload().await,
        egressd::reload::Outcome::Applied { .. }
    ));
    let r = get(&mut s, &format!("{allowed}/private"), "").await;
    assert_eq!(r.status, 403);
    assert!(r.text().contains("second reason"), "{}", r.text());
    assert!(!r.text().contains("first reason"), "{}", r.text());
}
