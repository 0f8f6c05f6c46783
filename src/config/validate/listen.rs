//! `listen:`: the plain proxy listeners (one address or a list), the optional TLS listener
//! (its certificate files must exist) and the admin listener.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use super::files::resolve;
use super::report::{Report, Src};
use super::settings::{each, one};
use super::values;
use crate::config::error::Problem;
use crate::config::raw::{RawListen, RawTlsListen, Text};
use crate::config::settings::{Listen, TlsListen};
use crate::config::yaml::Seg;

pub const DEFAULT_PROXY: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 3128);
pub const DEFAULT_ADMIN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 9090);

pub(super) fn listen(
    report: &mut Report,
    src: &Src<'_>,
    raw: RawListen,
    base: &Path,
    files: &mut Vec<PathBuf>,
) -> Listen {
    let proxy = match raw.proxy {
        None => vec![DEFAULT_PROXY],
        Some(list) if list.0.is_empty() => {
            report.error(
                src,
                &[Seg::key("proxy")],
                Problem::Missing {
                    key: "listen.proxy",
                    hint: ": give at least one address",
                },
            );
            vec![DEFAULT_PROXY]
        }
        // A single address is reported at `proxy` itself: `proxy[0]` does not exist there.
        Some(list) => each(report, src, "proxy", &list.0, values::socket),
    };
    Listen {
        proxy,
        proxy_tls: raw
            .proxy_tls
            .and_then(|t| tls(report, &src.child(&[Seg::key("proxy_tls")]), t, base, files)),
        admin: Some(one(
            report,
            src,
            "admin",
            raw.admin.as_deref(),
            DEFAULT_ADMIN,
            values::socket,
        )),
    }
}

fn tls(
    report: &mut Report,
    src: &Src<'_>,
    raw: RawTlsListen,
    base: &Path,
    files: &mut Vec<PathBuf>,
) -> Option<TlsListen> {
    let cert = pem_file(report, src, "cert", raw.cert, base, files);
    let key = pem_file(report, src, "key", raw.key, base, files);
    let client_ca = pem_file(report, src, "client_ca", raw.client_ca, base, files);
    let address = raw
        .address
        .map(|a| values::socket(&a).map_err(|p| report.error(src, &[Seg::key("address")], p)));
    let address = required(report, src, "address", address.transpose());
    let (cert, key) = (
        required(report, src, "cert", cert),
        required(report, src, "key", key),
    );
    Some(TlsListen {
        address: address?,
        cert: cert?,
        key: key?,
        client_ca: client_ca.ok()?,
    })
}

/// A file named in `proxy_tls`, which must exist. `Err`: reported already.
fn pem_file(
    report: &mut Report,
    src: &Src<'_>,
    key: &'static str,
    raw: Option<Text>,
    base: &Path,
    files: &mut Vec<PathBuf>,
) -> Result<Option<PathBuf>, ()> {
    let Some(raw) = raw else { return Ok(None) };
    let path = resolve(base, &raw);
    // Watched even when missing: it may appear (a secret mounted late), which is a reload.
    files.push(path.clone());
    if path.is_file() {
        return Ok(Some(path));
    }
    let problem = Problem::NotFound {
        what: "file",
        path: path.display().to_string(),
    };
    report.error(src, &[Seg::key(key)], problem);
    Err(())
}

/// A key `proxy_tls` cannot do without: reported when absent.
fn required<T>(
    report: &mut Report,
    src: &Src<'_>,
    key: &'static str,
    value: Result<Option<T>, ()>,
) -> Option<T> {
    if let Ok(None) = value {
        let hint = " in `listen.proxy_tls`";
        report.error(src, &[], Problem::Missing { key, hint });
    }
    value.ok().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::raw::OneOrMany;
    use crate::config::yaml::{self, Doc};

    /// Validates the `listen:` of `text`; returns the listeners and the messages.
    fn run(text: &str) -> (Listen, Vec<String>) {
        let mut report = Report::default();
        let src = Src::whole(Path::new("egressd.yaml"), text);
        let value = yaml::parse_value(Doc::whole(text)).unwrap();
        let (raw, errors) =
            yaml::collect::<RawListen>(src.doc, &[Seg::key("listen")], &value["listen"]);
        report.yaml(&src, errors);
        let listen = listen(
            &mut report,
            &src.child(&[Seg::key("listen")]),
            raw.unwrap_or_default(),
            Path::new("cfg"),
            &mut Vec::new(),
        );
        let messages = report.finish().iter().map(ToString::to_string).collect();
        (listen, messages)
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn proxy_is_one_address_or_a_list() {
        assert_eq!(
            run("listen: {proxy: 0.0.0.0:3128}").0.proxy,
            [addr("0.0.0.0:3128")]
        );
        let (l, _) = run("listen:\n  proxy:\n    - 0.0.0.0:3128\n    - \"[::]:8080\"\n");
        assert_eq!(l.proxy, [addr("0.0.0.0:3128"), addr("[::]:8080")]);
        assert_eq!(run("listen: {}").0.proxy, [DEFAULT_PROXY]);
        assert_eq!(run("listen: {}").0.admin, Some(DEFAULT_ADMIN));
        assert_eq!(
            OneOrMany(vec!["a".into()]),
            yaml::from_value(&"a".into()).unwrap()
        );
    }

    #[test]
    fn bad_listeners_are_located() {
        assert_eq!(
            run("listen: {proxy: []}").1,
            ["egressd.yaml:1:17: missing `listen.proxy`: give at least one address"]
        );
        let (_, m) = run("listen:\n  proxy: [1.2.3.4:80, nope]\n");
        assert_eq!(m.len(), 1);
        assert!(
            m[0].starts_with("egressd.yaml:2:23: invalid address `nope`"),
            "{m:?}"
        );
        let (_, m) = run("listen:\n  proxy: 3128\n");
        assert!(
            m[0].starts_with(
                "egressd.yaml:2:10: invalid type: integer `3128`, expected an address"
            ),
            "{m:?}"
        );
        let (l, m) = run("listen:\n  proxy_tls: {address: 0.0.0.0:3129}\n");
        assert_eq!(l.proxy_tls, None);
        assert_eq!(m.len(), 2, "{m:?}");
        assert!(m[0].contains("missing `cert`"), "{m:?}");
    }
}
