//! Raw serde types: the files exactly as written, before any checking. Every struct denies
//! unknown keys (typo safety) and gives every field a default, so a single entry can be
//! deserialized alone (see [`super::yaml::collect`]) and "missing" is decided by validation,
//! which has positions and better words than serde. Values whose syntax we check ourselves
//! (durations, CIDRs, actions, dates) stay strings here; ports are `i64` so that `0` and
//! `70000` get our message, not serde's.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use super::yaml::Value;

/// `egressd.yaml`.
#[derive(serde::Deserialize, Debug, Default)]
#[serde(deny_unknown_fields, default, expecting = "the egressd.yaml mapping")]
pub struct RawSettings {
    pub listen: RawListen,
    pub policies: Option<Text>,
    pub categories: Option<Text>,
    pub tests: Option<Text>,
    pub identity: RawIdentity,
    pub egress: RawEgress,
    pub tunnel: RawTunnel,
    pub dns: RawDns,
    pub forwarding: RawForwarding,
    pub timeouts: RawTimeouts,
    pub limits: RawLimits,
    pub cache: RawCache,
    pub audit: RawAudit,
    pub pac: Option<RawPac>,
}

#[derive(serde::Deserialize, Debug, Default)]
#[serde(deny_unknown_fields, default, expecting = "a `listen:` mapping")]
pub struct RawListen {
    pub proxy: Option<OneOrMany>,
    pub proxy_tls: Option<RawTlsListen>,
    pub admin: Option<Text>,
}

#[derive(serde::Deserialize, Debug, Default)]
#[serde(deny_unknown_fields, default, expecting = "a `proxy_tls:` mapping")]
pub struct RawTlsListen {
    pub address: Option<Text>,
    pub cert: Option<Text>,
    pub key: Option<Text>,
    pub client_ca: Option<Text>,
}

#[derive(serde::Deserialize, Debug, Default)]
#[serde(deny_unknown_fields, default, expecting = "an `identity:` mapping")]
pub struct RawIdentity {
    pub sources: Pairs<Text>,
    pub certificates: Pairs<Text>,
    pub credentials: Option<Text>,
    pub allow_basic_over_plaintext: bool,
    pub default_ministry: Option<Text>,
}

#[derive(serde::Deserialize, Debug, Default)]
#[serde(deny_unknown_fields, default, expecting = "an `egress:` mapping")]
pub struct RawEgress {
    pub allow_private_cidrs: Option<Vec<Text>>,
    pub connect_ports: Option<Vec<i64>>,
}

#[derive(serde::Deserialize, Debug, Default)]
#[serde(deny_unknown_fields, default, expecting = "a `tunnel:` mapping")]
pub struct RawTunnel {
    pub allow_non_tls: bool,
    pub splice: Option<bool>,
}

#[derive(serde::Deserialize, Debug, Default)]
#[serde(deny_unknown_fields, default, expecting = "a `dns:` mapping")]
pub struct RawDns {
    #[serde(rename = "static")]
    pub static_hosts: Pairs<OneOrMany>,
    pub servers: Option<Vec<Text>>,
}

#[derive(serde::Deserialize, Debug, Default)]
#[serde(deny_unknown_fields, default, expecting = "a `forwarding:` mapping")]
pub struct RawForwarding {
    pub x_forwarded_for: bool,
    pub fast_path: Option<bool>,
}

#[derive(serde::Deserialize, Debug, Default)]
#[serde(deny_unknown_fields, default, expecting = "a `timeouts:` mapping")]
pub struct RawTimeouts {
    pub request_header: Option<Text>,
    pub connect: Option<Text>,
    pub response_header: Option<Text>,
    pub idle: Option<Text>,
    pub tunnel_idle: Option<Text>,
    pub shutdown_grace: Option<Text>,
}

#[derive(serde::Deserialize, Debug, Default)]
#[serde(deny_unknown_fields, default, expecting = "a `limits:` mapping")]
pub struct RawLimits {
    pub max_connections: Option<u64>,
    pub max_connections_per_client: Option<u64>,
    pub max_header_bytes: Option<u64>,
    pub max_headers: Option<u64>,
    pub max_request_line: Option<u64>,
}

#[derive(serde::Deserialize, Debug, Default)]
#[serde(deny_unknown_fields, default, expecting = "a `cache:` mapping")]
pub struct RawCache {
    pub max_entries: Option<u64>,
}

#[derive(serde::Deserialize, Debug, Default)]
#[serde(deny_unknown_fields, default, expecting = "an `audit:` mapping")]
pub struct RawAudit {
    pub file: Option<Text>,
    pub keep_query: bool,
}

#[derive(serde::Deserialize, Debug, Default)]
#[serde(deny_unknown_fields, default, expecting = "a `pac:` mapping")]
pub struct RawPac {
    pub proxies: Option<Vec<Text>>,
    pub direct_domains: Option<Vec<Text>>,
    pub direct_cidrs: Option<Vec<Text>>,
}

/// One user of `identity.credentials` (the file maps user names to these).
#[derive(serde::Deserialize, Debug, Default)]
#[serde(
    deny_unknown_fields,
    default,
    expecting = "a mapping with `password_hash` and `ministry`"
)]
pub struct RawUser {
    pub password_hash: Option<Text>,
    pub ministry: Option<Text>,
}

/// `policies/_organization.yaml`. Rule lists stay YAML values so each rule is checked alone.
#[derive(serde::Deserialize, Debug, Default)]
#[serde(deny_unknown_fields, default, expecting = "the organization mapping")]
pub struct RawOrganization {
    pub mandatory: Option<Vec<Value>>,
    pub baseline: Option<Vec<Value>>,
    pub timezone: Option<Text>,
    pub contact: Option<Text>,
    pub default: Option<Text>,
}

/// `policies/<ministry>.yaml`.
#[derive(serde::Deserialize, Debug, Default)]
#[serde(
    deny_unknown_fields,
    default,
    expecting = "a ministry mapping (`ministry:`, `rules:`, ...)"
)]
pub struct RawMinistry {
    pub ministry: Option<Text>,
    pub description: Option<Text>,
    pub mode: Option<Text>,
    pub default: Option<Text>,
    pub contact: Option<Text>,
    pub rules: Option<Vec<Value>>,
}

#[derive(serde::Deserialize, Debug, Default)]
#[serde(
    deny_unknown_fields,
    default,
    expecting = "a rule mapping (`id:`, `action:`, selectors)"
)]
pub struct RawRule {
    pub id: Option<Text>,
    pub action: Option<Text>,
    pub domains: Option<Vec<Text>>,
    pub hosts: Option<Vec<Text>>,
    pub categories: Option<Vec<Text>>,
    pub urls: Option<Vec<Text>>,
    pub destinations: Option<Vec<Text>>,
    pub ports: Option<Vec<i64>>,
    pub reason: Option<Text>,
    pub ticket: Option<Text>,
    pub expires: Option<Text>,
    pub schedule: Option<RawSchedule>,
}

#[derive(serde::Deserialize, Debug, Default)]
#[serde(deny_unknown_fields, default, expecting = "a `schedule:` mapping")]
pub struct RawSchedule {
    pub days: Option<Vec<Text>>,
    pub hours: Option<Text>,
    pub timezone: Option<Text>,
}

/// `categories/<name>.yaml`.
#[derive(serde::Deserialize, Debug, Default)]
#[serde(
    deny_unknown_fields,
    default,
    expecting = "a category mapping (`description:`, `domains:`)"
)]
pub struct RawCategory {
    pub description: Option<Text>,
    pub domains: Option<Vec<Text>>,
}

/// One case of an `egressd test` file.
#[derive(serde::Deserialize, Debug, Default)]
#[serde(
    deny_unknown_fields,
    default,
    expecting = "a test case mapping (`url:`, `expect:`, ...)"
)]
pub struct RawTestCase {
    pub ministry: Option<Text>,
    pub client: Option<Text>,
    pub url: Option<Text>,
    pub expect: Option<Text>,
    pub rule: Option<Text>,
    pub at: Option<Text>,
}

/// A scalar read as text whatever YAML made of it, so `id: 42`, `ticket: 2041` or
/// `idle: 10` reach validation (which then says what is wrong with them) instead of failing
/// as "expected a string". Parsed values are strict about scalar types; text is not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Text(pub String);

impl std::ops::Deref for Text {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Text {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl From<Text> for String {
    fn from(t: Text) -> String {
        t.0
    }
}

impl From<Text> for std::sync::Arc<str> {
    fn from(t: Text) -> Self {
        t.0.into()
    }
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TextVisitor)
    }
}

struct TextVisitor;

impl Visitor<'_> for TextVisitor {
    type Value = Text;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Text, E> {
        Ok(Text(v.to_owned()))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Text, E> {
        Ok(Text(v.to_string()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Text, E> {
        Ok(Text(v.to_string()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Text, E> {
        Ok(Text(v.to_string()))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Text, E> {
        Ok(Text(v.to_string()))
    }
}

/// `listen.proxy` and `dns.static` values: one string or a list of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OneOrMany(pub Vec<String>);

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(OneOrManyVisitor)
    }
}

struct OneOrManyVisitor;

impl<'de> Visitor<'de> for OneOrManyVisitor {
    type Value = OneOrMany;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an address or a list of addresses")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<OneOrMany, E> {
        Ok(OneOrMany(vec![v.to_owned()]))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<OneOrMany, A::Error> {
        let mut out = Vec::new();
        while let Some(s) = seq.next_element::<Text>()? {
            out.push(s.0);
        }
        Ok(OneOrMany(out))
    }
}

/// A mapping kept as ordered `(key, value)` pairs (`identity.sources`, `dns.static`, …): order
/// matters for messages and the keys are checked by validation, not by serde.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pairs<V>(pub Vec<(String, V)>);

impl<V> Default for Pairs<V> {
    fn default() -> Self {
        Pairs(Vec::new())
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Pairs<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(PairsVisitor(PhantomData))
    }
}

struct PairsVisitor<V>(PhantomData<V>);

impl<'de, V: Deserialize<'de>> Visitor<'de> for PairsVisitor<V> {
    type Value = Pairs<V>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a mapping")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Pairs<V>, A::Error> {
        let mut out = Vec::new();
        while let Some((k, v)) = map.next_entry::<Text, V>()? {
            out.push((k.0, v));
        }
        Ok(Pairs(out))
    }
    /// An empty `sources:` is null in YAML; treat it as no entries.
    fn visit_unit<E: de::Error>(self) -> Result<Pairs<V>, E> {
        Ok(Pairs(Vec::new()))
    }
}
