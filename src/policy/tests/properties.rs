//! Property tests (proptest) of host normalisation through the decision: for a blocked domain or
//! range, every spelling the normaliser accepts is blocked by the rule that names it, and
//! whatever it accepts is a canonical fixed point.
//!
//! Spellings are built from parts that shrink well (a flag per character, a form per IP), so a
//! failure reduces to the one transformation that breaks it. The policy entry is written in one
//! random spelling and the request in another, as a policy author and an evasive client would.
//! Forms that are a *different* address (IPv4-compatible `::a.b.c.d`, NAT64 `64:ff9b::/96`) are
//! not spellings of an IPv4 address and are not generated here.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use proptest::sample::select;

use super::*;

/// 256 cases each (proptest's default), written out so the CI cost stays visible.
fn config() -> ProptestConfig {
    ProptestConfig::with_cases(256)
}

// ---------------------------------------------------------------------------------------------
// Names
// ---------------------------------------------------------------------------------------------

/// Internationalised labels: (NFC, NFD). Chosen so that upper-casing a character and folding it
/// back gives the same character (no `ß`, final sigma or dotless i, which are different names).
const IDN: [(&str, &str); 9] = [
    ("bücher", "bu\u{308}cher"),
    ("münchen", "mu\u{308}nchen"),
    ("ñandú", "n\u{303}andu\u{301}"),
    ("café", "cafe\u{301}"),
    ("zürich", "zu\u{308}rich"),
    ("δοκιμή", "δοκιμη\u{301}"),
    ("пример", "пример"),
    ("例え", "例え"),
    ("中文", "中文"),
];

/// Label separators UTS #46 maps to `.`: full stop, ideographic, full-width, half-width.
const DOTS: [char; 4] = ['.', '\u{3002}', '\u{FF0E}', '\u{FF61}'];

/// Code points UTS #46 ignores (mapped to nothing): soft hyphen, variation selector 16.
const IGNORED: [char; 2] = ['\u{AD}', '\u{FE0F}'];

#[derive(Clone, Debug)]
enum Label {
    Ascii(String),
    Idn(usize),
}

/// How one label is written.
#[derive(Clone, Debug)]
struct Style {
    /// Bit i: upper-case character i.
    upper: u32,
    /// Bit i: character i (ASCII only) in its full-width form (U+FF01..U+FF5E).
    fullwidth: u32,
    /// An IDN label as its punycode A-label rather than its U-label.
    a_label: bool,
    /// An IDN U-label in NFD (decomposed) rather than NFC.
    nfd: bool,
    /// An ignored code point inserted at this position.
    ignored: Option<(usize, char)>,
}

fn label() -> impl Strategy<Value = Label> {
    prop_oneof![
        3 => "[a-z0-9]{1,5}(-[a-z0-9]{1,4})?".prop_map(Label::Ascii),
        1 => (0..IDN.len()).prop_map(Label::Idn),
    ]
}

/// A top-level label: letters only, so the name never parses as an IPv4 number.
fn tld() -> impl Strategy<Value = Label> {
    prop_oneof![
        3 => "[a-z]{2,6}".prop_map(Label::Ascii),
        1 => (0..IDN.len()).prop_map(Label::Idn),
    ]
}

fn style() -> impl Strategy<Value = Style> {
    (
        any::<u32>(),
        prop_oneof![3 => Just(0u32), 1 => any::<u32>()],
        any::<bool>(),
        any::<bool>(),
        proptest::option::weighted(0.2, (0..16usize, select(IGNORED.to_vec()))),
    )
        .prop_map(|(upper, fullwidth, a_label, nfd, ignored)| Style {
            upper,
            fullwidth,
            a_label,
            nfd,
            ignored,
        })
}

/// A spelling of a name: a style per label, a separator per dot, maybe a trailing dot.
#[derive(Clone, Debug)]
struct Spelling {
    styles: Vec<Style>,
    dots: Vec<char>,
    trailing_dot: bool,
}

fn spelling() -> impl Strategy<Value = Spelling> {
    (
        prop::collection::vec(style(), 6),
        prop::collection::vec(prop_oneof![4 => Just('.'), 1 => select(DOTS.to_vec())], 6),
        any::<bool>(),
    )
        .prop_map(|(styles, dots, trailing_dot)| Spelling {
            styles,
            dots,
            trailing_dot,
        })
}

fn fullwidth(c: char) -> char {
    if ('\u{21}'..='\u{7e}').contains(&c) {
        char::from_u32(c as u32 - 0x21 + 0xFF01).unwrap_or(c)
    } else {
        c
    }
}

/// Upper case when it is one character that folds back (so the name stays the same name).
fn upper(c: char) -> char {
    let mut up = c.to_uppercase();
    match (up.next(), up.next()) {
        (Some(u), None) if u.to_lowercase().eq(std::iter::once(c)) => u,
        _ => c,
    }
}

fn write_label(l: &Label, s: &Style) -> String {
    let text = match l {
        Label::Ascii(a) => a.clone(),
        Label::Idn(i) if s.a_label => idna::domain_to_ascii(IDN[*i].0).unwrap(),
        Label::Idn(i) => (if s.nfd { IDN[*i].1 } else { IDN[*i].0 }).to_owned(),
    };
    let mut out: Vec<char> = text
        .chars()
        .enumerate()
        .map(|(i, c)| {
            let c = if s.upper >> (i % 32) & 1 == 1 {
                upper(c)
            } else {
                c
            };
            if s.fullwidth >> (i % 32) & 1 == 1 {
                fullwidth(c)
            } else {
                c
            }
        })
        .collect();
    if let Some((at, c)) = s.ignored {
        out.insert(at % (out.len() + 1), c);
    }
    out.into_iter().collect()
}

fn write_name(labels: &[Label], sp: &Spelling) -> String {
    let mut out = String::new();
    for (i, l) in labels.iter().enumerate() {
        if i > 0 {
            out.push(sp.dots[(i - 1) % sp.dots.len()]);
        }
        out.push_str(&write_label(l, &sp.styles[i % sp.styles.len()]));
    }
    if sp.trailing_dot {
        out.push('.');
    }
    out
}

/// The canonical form, built without the normaliser: ASCII lower case, IDN labels as punycode.
fn canonical(labels: &[Label]) -> String {
    let parts: Vec<String> = labels
        .iter()
        .map(|l| match l {
            Label::Ascii(a) => a.clone(),
            Label::Idn(i) => idna::domain_to_ascii(IDN[*i].0).unwrap(),
        })
        .collect();
    parts.join(".")
}

/// Where the blocking rule sits in the evaluation order.
#[derive(Clone, Copy, Debug)]
enum Stage {
    Mandatory,
    Ministry,
    Baseline,
}

fn stage() -> impl Strategy<Value = Stage> {
    select(vec![Stage::Mandatory, Stage::Ministry, Stage::Baseline])
}

/// Ministry `m` (enforcing, allow by default) with allow rules around one block rule placed at
/// `stage`; `decoy` names something that is not the blocked destination.
fn policy_with(block: Selectors, stage: Stage, decoy: Selectors, cats: Vec<Category>) -> Policy {
    let stem = match stage {
        Stage::Ministry => "m",
        _ => "_organization",
    };
    let blocking = rule(stem, "blocked", Action::Block, block);
    let near = |stem: &str| rule(stem, "decoy", Action::Allow, decoy.clone());
    let (mut mandatory, mut own, mut baseline) = (vec![], vec![near("m")], vec![]);
    match stage {
        Stage::Mandatory => mandatory.push(blocking),
        Stage::Ministry => own.push(blocking),
        Stage::Baseline => baseline.extend([blocking, near("_organization")]),
    }
    let m = ministry("m", Mode::Enforce, None, own);
    Policy::compile(&set(org(mandatory, baseline, Action::Allow), vec![m], cats))
}

/// How a blocked name is named by the rule.
#[derive(Clone, Copy, Debug)]
enum NameSelector {
    Domain,
    Category,
    Host,
}

/// The decision for `h` from ministry `m`, checked against the naive walk, over a tunnel and a
/// plain request.
fn decisions(p: &Policy, h: &Host, port: u16) -> Vec<(Outcome, Arc<str>)> {
    [None, Some("/")]
        .into_iter()
        .map(|path| {
            let m = p.ministry_id("m").unwrap();
            let v = p.decide(m, h, port, path, at("2026-05-01T12:00:00Z"));
            let e = p.explain(m, h, port, path, at("2026-05-01T12:00:00Z"));
            assert_eq!(v, e.verdict, "{h}: {e:?}");
            (v.outcome, p.rule(v.rule).name.clone())
        })
        .collect()
}

fn blocked_by(stage: Stage) -> (Outcome, Arc<str>) {
    let stem = match stage {
        Stage::Ministry => "m",
        _ => "_organization",
    };
    (Outcome::Block, format!("{stem}/blocked").into())
}

proptest! {
    #![proptest_config(config())]

    /// A blocked domain written one way in the policy and another in the request (case,
    /// trailing dot, U-label / A-label, NFC / NFD, full-width forms, ideographic dots, ignored
    /// code points), maybe under subdomains, is blocked; a sibling that only shares a suffix
    /// string is not.
    #[test]
    fn every_spelling_of_a_blocked_name_is_blocked(
        base in (prop::collection::vec(label(), 0..=2), tld()),
        sub in prop::collection::vec(label(), 0..=2),
        rule_spelling in spelling(),
        request_spelling in spelling(),
        selector in select(vec![NameSelector::Domain, NameSelector::Category, NameSelector::Host]),
        stage in stage(),
        port in 1u16..,
    ) {
        let mut base_labels = base.0;
        base_labels.push(base.1);
        let want_base = canonical(&base_labels);
        // The policy entry goes through the normaliser, as `config` validation does.
        let entry = normalize_host(&write_name(&base_labels, &rule_spelling))
            .map_err(|e| TestCaseError::fail(format!("policy entry refused: {e}")))?;
        prop_assert_eq!(entry.name(), Some(want_base.as_str()));
        let sub = if matches!(selector, NameSelector::Host) { vec![] } else { sub };
        let labels: Vec<Label> = sub.into_iter().chain(base_labels.iter().cloned()).collect();
        let name = Box::<str>::from(want_base.as_str());
        let (block, cats) = match selector {
            NameSelector::Domain => (Selectors { domains: vec![name.clone()], ..Default::default() }, vec![]),
            NameSelector::Host => (Selectors { hosts: vec![entry.clone()], ..Default::default() }, vec![]),
            NameSelector::Category => (
                categories(&["c"]),
                vec![Category { name: "c".into(), description: None, domains: vec![name.clone()] }],
            ),
        };
        let decoy_name = format!("x{want_base}");
        let p = policy_with(block, stage, domains(&[decoy_name.as_str()]), cats);

        let raw = write_name(&labels, &request_spelling);
        let h = normalize_host(&raw)
            .map_err(|e| TestCaseError::fail(format!("{raw:?} refused: {e}")))?;
        let want = canonical(&labels);
        prop_assert_eq!(h.name(), Some(want.as_str()), "{:?}", raw);
        for got in decisions(&p, &h, port) {
            prop_assert_eq!(got, blocked_by(stage), "{:?} -> {}", raw, h);
        }
        // The decoy (`x` + the blocked name) is a different name and stays allowed.
        if let Ok(decoy) = normalize_host(&decoy_name) {
            for got in decisions(&p, &decoy, port) {
                prop_assert_eq!(got, (Outcome::Allow, Arc::from("m/decoy")));
            }
        }
    }

    /// Whatever the normaliser accepts is canonical: lower-case ASCII, no trailing dot, DNS
    /// lengths, and a fixed point (normalising its own display gives it back), so the name that
    /// was decided is the name that is resolved, logged and sent upstream. Everything else is
    /// an error (the proxy answers 400).
    #[test]
    fn accepted_hosts_are_canonical_fixed_points(
        parts in prop::collection::vec(select(NASTY.to_vec()), 1..12),
    ) {
        let raw: String = parts.concat();
        if let Ok(h) = normalize_host(&raw) {
            if let Host::Name(n) = &h {
                prop_assert!(n.is_ascii() && !n.bytes().any(|b| b.is_ascii_uppercase()), "{:?} -> {}", raw, n);
                prop_assert!(!n.ends_with('.') && n.len() <= 253, "{:?} -> {}", raw, n);
                prop_assert!(n.split('.').all(|l| (1..=63).contains(&l.len())), "{:?} -> {}", raw, n);
                prop_assert!(!n.contains(['%', ':', '/', '@', ' ', '[', ']', '\\', '\0']), "{:?} -> {}", raw, n);
            }
            prop_assert_eq!(normalize_host(&h.to_string()), Ok(h.clone()), "{:?}", raw);
        }
    }
}

/// Pieces of hostile host strings: name parts, separators, IDN and full-width forms, ignored
/// and forbidden code points, IP-ish fragments.
const NASTY: [&str; 34] = [
    "facebook",
    "com",
    "xn--bcher-kva",
    "bücher",
    "ｆａｃｅ",
    "FaCe",
    ".",
    "..",
    "\u{3002}",
    "\u{FF0E}",
    "-",
    "_",
    "*",
    ":",
    "[",
    "]",
    "%",
    "@",
    " ",
    "/",
    "\\",
    "\0",
    "\u{AD}",
    "\u{200B}",
    "\u{200D}",
    "\u{FE0F}",
    "0x7f",
    "0177",
    "1",
    "256",
    "::ffff:",
    "4294967296",
    "xn--",
    "\u{130}",
];

// ---------------------------------------------------------------------------------------------
// IP literals
// ---------------------------------------------------------------------------------------------

/// How one number of an IPv4 literal is written (WHATWG: leading `0` is octal, `0x` hex).
#[derive(Clone, Copy, Debug)]
enum Radix {
    Dec,
    Oct {
        zeros: u8,
    },
    Hex {
        upper_x: bool,
        upper: bool,
        zeros: u8,
    },
}

fn radix() -> impl Strategy<Value = Radix> {
    prop_oneof![
        2 => Just(Radix::Dec),
        1 => (0u8..3).prop_map(|zeros| Radix::Oct { zeros }),
        1 => (any::<bool>(), any::<bool>(), 0u8..3)
            .prop_map(|(upper_x, upper, zeros)| Radix::Hex { upper_x, upper, zeros }),
    ]
}

fn number(n: u32, r: Radix) -> String {
    match r {
        Radix::Dec => n.to_string(),
        Radix::Oct { zeros } => format!("0{}{n:o}", "0".repeat(zeros as usize)),
        Radix::Hex {
            upper_x,
            upper,
            zeros,
        } => {
            let digits = if upper {
                format!("{n:X}")
            } else {
                format!("{n:x}")
            };
            let x = if upper_x { "0X" } else { "0x" };
            format!("{x}{}{digits}", "0".repeat(zeros as usize))
        }
    }
}

/// How an IPv4 address is written.
#[derive(Clone, Debug)]
enum V4Form {
    /// One to four numbers (`a`, `a.b` with a 24-bit b, `a.b.c` with a 16-bit c, `a.b.c.d`),
    /// each in its own radix; maybe a trailing dot.
    Numbers {
        count: usize,
        radix: [Radix; 4],
        trailing_dot: bool,
    },
    /// IPv4-mapped IPv6: `::ffff:a.b.c.d` or `::ffff:hhhh:hhhh`.
    Mapped { v6: V6Form, dotted: bool },
}

/// How an IPv6 address is written.
#[derive(Clone, Copy, Debug)]
struct V6Form {
    brackets: bool,
    upper: bool,
    /// `0db8` rather than `db8`, and no `::`.
    expanded: bool,
}

fn v6_form() -> impl Strategy<Value = V6Form> {
    (
        prop_oneof![3 => Just(true), 1 => Just(false)],
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(brackets, upper, expanded)| V6Form {
            brackets,
            upper,
            expanded,
        })
}

fn v4_form() -> impl Strategy<Value = V4Form> {
    prop_oneof![
        3 => (1usize..=4, [radix(), radix(), radix(), radix()], any::<bool>())
            .prop_map(|(count, radix, trailing_dot)| V4Form::Numbers { count, radix, trailing_dot }),
        1 => (v6_form(), any::<bool>()).prop_map(|(v6, dotted)| V4Form::Mapped { v6, dotted }),
    ]
}

fn write_v4(ip: Ipv4Addr, form: &V4Form) -> String {
    let o = ip.octets();
    let n = u32::from(ip);
    match form {
        V4Form::Numbers {
            count,
            radix,
            trailing_dot,
        } => {
            let parts: Vec<u32> = match count {
                1 => vec![n],
                2 => vec![o[0].into(), n & 0xff_ffff],
                3 => vec![o[0].into(), o[1].into(), n & 0xffff],
                _ => o.iter().map(|b| u32::from(*b)).collect(),
            };
            let mut s: Vec<String> = parts
                .iter()
                .zip(radix)
                .map(|(p, r)| number(*p, *r))
                .collect();
            if *trailing_dot {
                s.push(String::new());
            }
            s.join(".")
        }
        V4Form::Mapped { v6, dotted } => {
            let mapped = ip.to_ipv6_mapped();
            if *dotted {
                write_v6_with_v4_tail(mapped, *v6, ip)
            } else {
                write_v6(mapped, *v6)
            }
        }
    }
}

fn groups(ip: Ipv6Addr, f: V6Form) -> Vec<String> {
    ip.segments()
        .iter()
        .map(|g| match (f.expanded, f.upper) {
            (true, true) => format!("{g:04X}"),
            (true, false) => format!("{g:04x}"),
            (false, true) => format!("{g:X}"),
            (false, false) => format!("{g:x}"),
        })
        .collect()
}

fn bracket(s: String, f: V6Form) -> String {
    if f.brackets {
        format!("[{s}]")
    } else {
        s
    }
}

fn write_v6(ip: Ipv6Addr, f: V6Form) -> String {
    let body = if f.expanded {
        groups(ip, f).join(":")
    } else if f.upper {
        ip.to_string().to_uppercase()
    } else {
        ip.to_string()
    };
    bracket(body, f)
}

/// The first six groups in hex, the last 32 bits as a dotted quad (`0:0:0:0:0:ffff:1.2.3.4`).
fn write_v6_with_v4_tail(ip: Ipv6Addr, f: V6Form, tail: Ipv4Addr) -> String {
    let head = groups(ip, f)[..6].join(":");
    bracket(format!("{head}:{tail}"), f)
}

/// A range and an address in it.
#[derive(Clone, Debug)]
struct Inside {
    net: ipnet::IpNet,
    addr: IpAddr,
    /// An address just outside the range (the last network bit flipped), unless it is `/0`.
    outside: Option<IpAddr>,
}

fn v4_inside() -> impl Strategy<Value = Inside> {
    (any::<u32>(), 0u8..=32, any::<u32>()).prop_map(|(a, len, host)| {
        let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
        let net = ipnet::Ipv4Net::new(Ipv4Addr::from(a & mask), len).unwrap();
        let addr = Ipv4Addr::from((a & mask) | (host & !mask));
        let outside =
            (len > 0).then(|| IpAddr::V4(Ipv4Addr::from(u32::from(addr) ^ (1 << (32 - len)))));
        Inside {
            net: net.into(),
            addr: addr.into(),
            outside,
        }
    })
}

/// IPv6 ranges outside `::/16` (so no address in them is IPv4-mapped or IPv4-compatible).
fn v6_inside() -> impl Strategy<Value = Inside> {
    ((1u128 << 112).., 0u8..=128, any::<u128>()).prop_map(|(a, len, host)| {
        let mask = if len == 0 {
            0
        } else {
            u128::MAX << (128 - len)
        };
        let addr =
            Ipv6Addr::from((a & mask) | (host & !mask) | if len < 16 { 1 << 112 } else { 0 });
        let net = ipnet::Ipv6Net::new(Ipv6Addr::from(a & mask), len).unwrap();
        let outside =
            (len > 0).then(|| IpAddr::V6(Ipv6Addr::from(u128::from(addr) ^ (1 << (128 - len)))));
        Inside {
            net: net.into(),
            addr: addr.into(),
            outside,
        }
    })
}

/// An IPv4 range written in the policy as IPv4-mapped IPv6 (`::ffff:192.0.2.0/120`).
fn mapped_inside() -> impl Strategy<Value = Inside> {
    v4_inside().prop_map(|i| {
        let (IpAddr::V4(net), len) = (i.net.network(), i.net.prefix_len()) else {
            unreachable!()
        };
        let net = ipnet::Ipv6Net::new(net.to_ipv6_mapped(), len + 96).unwrap();
        Inside {
            net: net.into(),
            ..i
        }
    })
}

/// A spelling of `ip`: IPv4 in any number form (or mapped), IPv6 in any written form.
fn write_ip(ip: IpAddr, v4: &V4Form, v6: V6Form) -> String {
    match ip {
        IpAddr::V4(a) => write_v4(a, v4),
        IpAddr::V6(a) => write_v6(a, v6),
    }
}

proptest! {
    #![proptest_config(config())]

    /// An address inside a blocked range is blocked in every literal form (dotted, one to
    /// three numbers, decimal / octal / hex, trailing dot, IPv4-mapped IPv6 in hex or dotted
    /// tail, bracketed or bare IPv6, upper case, expanded groups), both by `destinations:` and
    /// by a `hosts:` entry naming the address in another form; the address just outside is not.
    #[test]
    fn every_spelling_of_an_address_in_a_blocked_range_is_blocked(
        inside in prop_oneof![v4_inside(), v6_inside(), mapped_inside()],
        request in (v4_form(), v6_form()),
        entry in (v4_form(), v6_form()),
        by_host in any::<bool>(),
        stage in stage(),
        port in 1u16..,
    ) {
        let block = if by_host {
            let e = write_ip(inside.addr, &entry.0, entry.1);
            hosts(&[e.as_str()])
        } else {
            Selectors { destinations: vec![inside.net], ..Default::default() }
        };
        let p = policy_with(block, stage, domains(&["decoy.example"]), vec![]);
        let raw = write_ip(inside.addr, &request.0, request.1);
        let h = normalize_host(&raw)
            .map_err(|e| TestCaseError::fail(format!("{raw:?} refused: {e}")))?;
        prop_assert_eq!(&h, &Host::Ip(inside.addr), "{:?}", raw);
        for got in decisions(&p, &h, port) {
            prop_assert_eq!(got, blocked_by(stage), "{:?} -> {}", raw, h);
        }
        if let Some(out) = inside.outside {
            let raw = write_ip(out, &request.0, request.1);
            for got in decisions(&p, &host(&raw), port) {
                prop_assert_eq!(got, (Outcome::Allow, Arc::from("_organization/_default")), "{:?}", raw);
            }
        }
    }
}
