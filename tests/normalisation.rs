//! Every spelling of a blocked destination is blocked through the real proxy: case, trailing
//! dot, IDN/punycode, every IPv4 literal form, IPv4-mapped IPv6, userinfo tricks (refused) and
//! a lying Host header. None of them may reach the origin.

mod common;

use std::sync::atomic::Ordering;

use common::origin;

fn tree() -> common::ConfigTree {
    let social = "description: Social media\ndomains: [facebook.com, bücher.example]\n";
    common::ConfigTree::new(
        &common::egressd_yaml(""),
        &[
            ("policies/_organization.yaml", common::ORG),
            ("policies/agriculture.yaml", common::AGRICULTURE),
            ("policies/health.yaml", common::HEALTH),
            ("categories/social-media.yaml", social),
        ],
    )
}

#[tokio::test]
async fn every_spelling_of_a_blocked_host_is_blocked() {
    let o = origin::start().await;
    let p = common::start(tree()).await;
    let port = o.addr.port();
    let social = r#"details="_organization/social-media""#;
    let metadata = r#"details="_organization/metadata""#;
    let cases = [
        (format!("http://WWW.FACEBOOK.COM:{port}/"), social),
        (format!("http://www.facebook.com.:{port}/"), social),
        (format!("http://Www.FaceBook.Com.:{port}/x"), social),
        (format!("http://xn--BCHER-kva.example:{port}/"), social),
        (format!("http://a.b.xn--bcher-kva.example:{port}/"), social),
        // 10.99.1.1 (mandatory `metadata` destinations 10.99.0.0/16) in every form.
        (format!("http://10.99.1.1:{port}/"), metadata),
        (format!("http://174260481:{port}/"), metadata),
        (format!("http://0xa630101:{port}/"), metadata),
        (format!("http://012.0143.01.01:{port}/"), metadata),
        (format!("http://0x0a.0x63.0x01.0x01:{port}/"), metadata),
        (format!("http://10.99.257:{port}/"), metadata),
        (format!("http://[::ffff:10.99.1.1]:{port}/"), metadata),
        (format!("http://[::ffff:a63:101]:{port}/"), metadata),
        // A name resolving into the blocked range is blocked by the same rule.
        (format!("http://metadata.test:{port}/"), metadata),
    ];
    for (url, want) in &cases {
        let r = common::get(p.addr, url, "").await;
        assert_eq!(r.status, 403, "{url} was not blocked");
        let ps = r.header("proxy-status").unwrap_or("");
        assert!(ps.contains(want), "{url}: {ps}");
    }
    // Userinfo that makes one host look like another is refused outright (RFC 9110 §4.2.4).
    for url in [
        format!("http://allowed.test@www.facebook.com:{port}/"),
        format!("http://user:pw@facebook.com:{port}/"),
    ] {
        let r = common::get(p.addr, &url, "").await;
        assert_eq!(r.status, 400, "{url} was not refused");
    }
    // The Host header never decides: a blocked URI with an allowed Host is blocked...
    let req = format!(
        "GET http://www.facebook.com:{port}/ HTTP/1.1\r\nHost: allowed.test:{port}\r\n\r\n"
    );
    assert_eq!(common::raw(p.addr, req.as_bytes()).await.status, 403);
    // ...and an allowed URI with a blocked Host goes to the URI's host.
    let req = format!("GET http://allowed.test:{port}/headers HTTP/1.1\r\nHost: www.facebook.com\r\nConnection: close\r\n\r\n");
    let r = common::raw(p.addr, req.as_bytes()).await;
    assert_eq!(r.status, 200);
    assert!(r.text().contains(&format!("host: allowed.test:{port}")));
    assert_eq!(
        o.connections.load(Ordering::SeqCst),
        1,
        "only the allowed request reached the origin"
    );
}

#[tokio::test]
async fn raw_unicode_or_percent_hosts_never_pass() {
    let o = origin::start().await;
    let p = common::start(tree()).await;
    let port = o.addr.port();
    for req in [
        format!("GET http://bücher.example:{port}/ HTTP/1.1\r\nHost: x\r\n\r\n"),
        format!("GET http://%77ww.facebook.com:{port}/ HTTP/1.1\r\nHost: x\r\n\r\n"),
        format!("GET http://www.facebook.com..:{port}/ HTTP/1.1\r\nHost: x\r\n\r\n"),
        format!("GET http://www.face%20book.com:{port}/ HTTP/1.1\r\nHost: x\r\n\r\n"),
    ] {
        let r = common::raw(p.addr, req.as_bytes()).await;
        assert!(r.status == 400 || r.status == 403, "{req}: {}", r.status);
    }
    assert_eq!(o.connections.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn connect_spellings_are_blocked() {
    let p = common::start(tree()).await;
    for target in [
        "WWW.FACEBOOK.COM.:443",
        "facebook.com:443",
        "xn--bcher-kva.example:443",
        "[::ffff:10.99.1.1]:443",
        "174260481:443",
    ] {
        let r = common::raw(
            p.addr,
            format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes(),
        )
        .await;
        assert_eq!(r.status, 403, "CONNECT {target}");
        assert!(r
            .header("proxy-status")
            .unwrap()
            .contains("http_request_denied"));
    }
}
