//! Webhook destinations: their fields and auth rules (one validation for the
//! TOML file and the management API), body formats, Standard Webhooks
//! signing, and delivery. See `shared/protocol/webhooks.md`.

pub mod deliver;
pub mod format;
pub mod registry;
pub mod sign;

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::alert::Alert;
use crate::secret::Secret;

/// Body format of a destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Generic,
    Slack,
    Discord,
    Gchat,
    Teams,
    Pagerduty,
}

impl Format {
    /// The format a URL's host implies, `Generic` when none.
    pub fn infer(url: &reqwest::Url) -> Format {
        let host = url.host_str().unwrap_or("").to_ascii_lowercase();
        let path = url.path();
        if host == "hooks.slack.com" {
            Format::Slack
        } else if matches!(host.as_str(), "discord.com" | "discordapp.com")
            && path.starts_with("/api/webhooks/")
        {
            Format::Discord
        } else if host == "chat.googleapis.com" {
            Format::Gchat
        } else if host == "events.pagerduty.com" {
            Format::Pagerduty
        } else if host.ends_with(".webhook.office.com") || host.ends_with(".logic.azure.com") {
            Format::Teams
        } else {
            Format::Generic
        }
    }
}

/// How a destination authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthType {
    #[default]
    None,
    Basic,
    Querystring,
    Authheader,
    Header,
    Bearer,
}

/// A destination as written by the operator (TOML `[[webhook]]`) or sent to
/// the API. Field names follow the API (camelCase); the TOML file may use
/// snake_case for the same fields.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DestinationSpec {
    pub name: Option<String>,
    #[serde(alias = "endpoint")]
    pub url: Option<String>,
    #[serde(rename = "type")]
    pub format: Option<Format>,
    #[serde(alias = "is_alert_hook")]
    pub is_alert_hook: Option<bool>,
    #[serde(alias = "auth_type")]
    pub auth_type: Option<AuthType>,
    #[serde(alias = "user_name")]
    pub user_name: Option<String>,
    pub password: Option<Secret>,
    pub token: Option<Secret>,
    #[serde(alias = "header_name")]
    pub header_name: Option<String>,
    #[serde(alias = "query_param")]
    pub query_param: Option<String>,
    pub secret: Option<Secret>,
    /// Per-attempt timeout (default 10 s).
    #[serde(default, deserialize_with = "crate::config::duration::deserialize_opt")]
    pub timeout: Option<Duration>,
    /// Give up on a notification this long after its first attempt (default 24 h).
    #[serde(
        default,
        alias = "retry_for",
        deserialize_with = "crate::config::duration::deserialize_opt"
    )]
    pub retry_for: Option<Duration>,
    /// Back-off base: attempt n waits random(0, min(backoff_max, backoff × 2^n)) (default 1 s).
    #[serde(default, deserialize_with = "crate::config::duration::deserialize_opt")]
    pub backoff: Option<Duration>,
    /// Back-off cap (default 5 min).
    #[serde(
        default,
        alias = "backoff_max",
        deserialize_with = "crate::config::duration::deserialize_opt"
    )]
    pub backoff_max: Option<Duration>,
    /// Flood guard: at most this many deliveries per minute (default 20).
    #[serde(alias = "max_per_minute")]
    pub max_per_minute: Option<u32>,
}

/// A broken rule: the field (API spelling) and what is wrong.
pub type Violation = (&'static str, String);

/// Prefix of a Standard Webhooks secret.
pub const SECRET_PREFIX: &str = "whsec_";

impl DestinationSpec {
    /// Every rule of `webhooks.md` this spec breaks. `name` is required when
    /// `require_name` (the TOML file refers to destinations by name).
    pub fn validate(&self, require_name: bool) -> Vec<Violation> {
        let mut v: Vec<Violation> = Vec::new();
        match self.name.as_deref() {
            None if require_name => v.push(("name", "is required".into())),
            Some("") => v.push(("name", "must not be empty".into())),
            Some(n) if n.chars().count() > 100 => v.push(("name", "must be at most 100 characters".into())),
            _ => {}
        }
        match self.url.as_deref() {
            None => v.push(("url", "is required (url or endpoint)".into())),
            Some(u) => {
                if let Err(e) = check_url(u) {
                    v.push(("url", e));
                }
            }
        }
        let auth = self.auth_type.unwrap_or_default();
        let has = |o: &Option<Secret>| o.as_ref().is_some_and(|s| !s.is_empty());
        let has_user = self.user_name.as_deref().is_some_and(|u| !u.is_empty());
        let (user, password, token) = (has_user, has(&self.password), has(&self.token));
        match auth {
            AuthType::None => {
                for (field, present) in [("userName", user), ("password", password), ("token", token)] {
                    if present {
                        v.push((field, "must be absent when authType is none".into()));
                    }
                }
            }
            AuthType::Basic => {
                if !user {
                    v.push(("userName", "is required when authType is basic".into()));
                }
                if !password {
                    v.push(("password", "is required when authType is basic".into()));
                }
                if token {
                    v.push(("token", "must be absent when authType is basic".into()));
                }
            }
            _ => {
                let name = auth_name(auth);
                if !token {
                    v.push(("token", format!("is required when authType is {name}")));
                }
                for (field, present) in [("userName", user), ("password", password)] {
                    if present {
                        v.push((field, format!("must be absent when authType is {name}")));
                    }
                }
            }
        }
        if user && password && token {
            v.push((
                "token",
                "give either user credentials or a token, not both".into(),
            ));
        }
        if let Some(h) = &self.header_name {
            if auth != AuthType::Header {
                v.push(("headerName", "is only used with authType header".into()));
            } else if reqwest::header::HeaderName::from_bytes(h.as_bytes()).is_err() {
                v.push(("headerName", format!("{h:?} is not a valid header name")));
            }
        }
        if let Some(q) = &self.query_param
            && (auth != AuthType::Querystring || q.is_empty())
        {
            v.push((
                "queryParam",
                "is only used, non-empty, with authType querystring".into(),
            ));
        }
        if let Some(s) = &self.secret
            && let Err(e) = sign::decode_secret(s.expose())
        {
            v.push(("secret", e));
        }
        if self.format == Some(Format::Pagerduty) && !token {
            v.push((
                "token",
                "is required for type pagerduty (it is the routing_key)".into(),
            ));
        }
        if self.max_per_minute == Some(0) {
            v.push(("max_per_minute", "must be at least 1".into()));
        }
        for (field, d) in [("timeout", self.timeout), ("backoff", self.backoff)] {
            if d.is_some_and(|d| d.is_zero()) {
                v.push((field, "must be more than 0".into()));
            }
        }
        v
    }
}

fn auth_name(a: AuthType) -> &'static str {
    match a {
        AuthType::None => "none",
        AuthType::Basic => "basic",
        AuthType::Querystring => "querystring",
        AuthType::Authheader => "authheader",
        AuthType::Header => "header",
        AuthType::Bearer => "bearer",
    }
}

/// An `http`/`https` URL of the shape [`url_shape`] accepts.
pub fn check_url(url: &str) -> Result<reqwest::Url, String> {
    // The URL may carry credentials (userinfo, a token in the query): never quote it.
    let u = reqwest::Url::parse(url).map_err(|e| format!("is not a URL ({e})"))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(format!("scheme must be http or https, got {:?}", u.scheme()));
    }
    if !url_shape(url) {
        return Err(
            "must look like http(s)://host[:port][/path][?query], the host a DNS name or an IPv4 address"
                .into(),
        );
    }
    Ok(u)
}

/// The URL shape the API document publishes (`URL_PATTERN` in
/// `scripts/gen-openapi.py`), checked by hand: `http(s)://`, a DNS name whose
/// last label starts with a letter or a dotted-quad IPv4 address, an optional
/// port up to 65535, then printable ASCII.
pub fn url_shape(url: &str) -> bool {
    let Some(rest) = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
    else {
        return false;
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    if !tail.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return false;
    }
    let (host, port) = match authority.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (authority, None),
    };
    let port_ok = port.is_none_or(|p| {
        p.bytes().all(|b| b.is_ascii_digit())
            && match p.len() {
                1..=4 => true,
                5 => !p.starts_with('0') && p.parse::<u32>().is_ok_and(|n| n <= 65_535),
                _ => false,
            }
    });
    port_ok && (ipv4_shape(host) || dns_shape(host))
}

fn ipv4_shape(host: &str) -> bool {
    let parts: Vec<&str> = host.split('.').collect();
    parts.len() == 4
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.len() <= 3
                && p.bytes().all(|b| b.is_ascii_digit())
                && (p.len() == 1 || !p.starts_with('0'))
                && p.parse::<u16>().is_ok_and(|n| n <= 255)
        })
}

fn dns_shape(host: &str) -> bool {
    let labels: Vec<&str> = host.split('.').collect();
    let label_ok = |l: &str| {
        let b = l.as_bytes();
        !b.is_empty()
            && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
            && b[0] != b'-'
            && b[b.len() - 1] != b'-'
    };
    labels.iter().all(|l| label_ok(l))
        && labels
            .last()
            .is_some_and(|l| l.as_bytes()[0].is_ascii_alphabetic())
}

/// Credentials as they go on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    None,
    Basic {
        user: String,
        password: Secret,
    },
    /// `Authorization: Bearer <token>`.
    Bearer(Secret),
    /// `Authorization: <token>`.
    AuthHeader(Secret),
    /// `<name>: <token>`.
    Header {
        name: String,
        token: Secret,
    },
    /// `?<param>=<token>`.
    Query {
        param: String,
        token: Secret,
    },
}

/// Delivery tuning of one destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tuning {
    pub timeout: Duration,
    pub retry_for: Duration,
    pub backoff: Duration,
    pub backoff_max: Duration,
    pub max_per_minute: u32,
}

/// A validated destination, ready to deliver to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    pub name: String,
    pub url: reqwest::Url,
    pub format: Format,
    pub is_alert_hook: bool,
    pub auth: Auth,
    /// The routing key (pagerduty) or token, for formats that put it in the body.
    pub token: Option<Secret>,
    /// `whsec_…`; `None` until one is generated and stored.
    pub secret: Option<Secret>,
    pub tuning: Tuning,
}

impl Destination {
    /// Builds a destination from a spec that passed [`DestinationSpec::validate`];
    /// `fallback_name` names it when the spec does not.
    pub fn from_spec(spec: &DestinationSpec, fallback_name: &str) -> Result<Self, Vec<Violation>> {
        let problems = spec.validate(false);
        if !problems.is_empty() {
            return Err(problems);
        }
        let url = check_url(spec.url.as_deref().unwrap_or_default()).map_err(|e| vec![("url", e)])?;
        let token = spec.token.clone().filter(|t| !t.is_empty());
        let tok = || token.clone().unwrap_or_default();
        let auth = match spec.auth_type.unwrap_or_default() {
            AuthType::None => Auth::None,
            AuthType::Basic => Auth::Basic {
                user: spec.user_name.clone().unwrap_or_default(),
                password: spec.password.clone().unwrap_or_default(),
            },
            AuthType::Bearer => Auth::Bearer(tok()),
            AuthType::Authheader => Auth::AuthHeader(tok()),
            AuthType::Header => Auth::Header {
                name: spec.header_name.clone().unwrap_or_else(|| "X-Api-Key".into()),
                token: tok(),
            },
            AuthType::Querystring => Auth::Query {
                param: spec.query_param.clone().unwrap_or_else(|| "token".into()),
                token: tok(),
            },
        };
        Ok(Destination {
            name: spec.name.clone().unwrap_or_else(|| fallback_name.to_owned()),
            format: spec.format.unwrap_or_else(|| Format::infer(&url)),
            url,
            is_alert_hook: spec.is_alert_hook.unwrap_or(true),
            auth,
            token,
            secret: spec.secret.clone(),
            tuning: Tuning {
                timeout: spec.timeout.unwrap_or(Duration::from_secs(10)),
                retry_for: spec.retry_for.unwrap_or(Duration::from_secs(24 * 3600)),
                backoff: spec.backoff.unwrap_or(Duration::from_secs(1)),
                backoff_max: spec.backoff_max.unwrap_or(Duration::from_secs(300)),
                max_per_minute: spec.max_per_minute.unwrap_or(20),
            },
        })
    }
}

/// What a notification is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Firing,
    Resolved,
    Test,
}

impl Kind {
    /// The generic body's `type`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Firing => "alert.firing",
            Kind::Resolved => "alert.resolved",
            Kind::Test => "test",
        }
    }
}

/// One notification to deliver: the same for every destination, rendered
/// per destination by [`format::render`].
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub kind: Kind,
    /// Unique per notification; the `webhook-id` of every attempt.
    pub id: String,
    pub timestamp: SystemTime,
    pub host: String,
    /// One line for humans.
    pub text: String,
    /// The alert, except for test messages.
    pub alert: Option<Alert>,
}

/// A random UUID (version 4), e.g. for notification and destination ids.
pub fn new_id() -> String {
    let mut b = sign::random_bytes::<16>();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(auth: AuthType) -> DestinationSpec {
        DestinationSpec {
            name: Some("ops".into()),
            url: Some("https://example.test/hook".into()),
            auth_type: Some(auth),
            ..DestinationSpec::default()
        }
    }

    fn fields(v: &[Violation]) -> Vec<&'static str> {
        v.iter().map(|(f, _)| *f).collect()
    }

    #[test]
    fn the_seed_rules_one_by_one() {
        let s = |x: &str| Some(Secret::new(x));
        // none with a token
        let mut none = spec(AuthType::None);
        none.token = s("t");
        assert_eq!(fields(&none.validate(true)), ["token"]);
        // basic without password
        let mut basic = spec(AuthType::Basic);
        basic.user_name = Some("u".into());
        assert_eq!(fields(&basic.validate(true)), ["password"]);
        // bearer without token
        assert_eq!(fields(&spec(AuthType::Bearer).validate(true)), ["token"]);
        // credentials and token together
        let mut both = spec(AuthType::Basic);
        both.user_name = Some("u".into());
        both.password = s("p");
        both.token = s("t");
        let v = both.validate(true);
        assert!(fields(&v).contains(&"token"), "{v:?}");
        // ftp URL
        let mut ftp = spec(AuthType::None);
        ftp.url = Some("ftp://example.test/".into());
        assert_eq!(fields(&ftp.validate(true)), ["url"]);
        // valid ones
        for a in [
            AuthType::Querystring,
            AuthType::Authheader,
            AuthType::Header,
            AuthType::Bearer,
        ] {
            let mut ok = spec(a);
            ok.token = s("t");
            assert!(ok.validate(true).is_empty(), "{a:?}");
        }
        assert!(spec(AuthType::None).validate(true).is_empty());
    }

    #[test]
    fn every_violation_is_listed() {
        let bad = DestinationSpec {
            auth_type: Some(AuthType::None),
            user_name: Some("u".into()),
            password: Some(Secret::new("p")),
            header_name: Some("X".into()),
            secret: Some(Secret::new("nope")),
            ..DestinationSpec::default()
        };
        assert_eq!(
            fields(&bad.validate(true)),
            ["name", "url", "userName", "password", "headerName", "secret"]
        );
    }

    #[test]
    fn url_shapes() {
        for ok in [
            "http://127.0.0.1:18632/hook",
            "https://hooks.slack.com/services/T0/B0/XX",
            "https://chat.googleapis.com/v1/spaces/x/messages?key=a&token=b",
            "http://localhost",
            "http://a-b.example:65535/",
            "http://x:0080#frag",
        ] {
            assert!(url_shape(ok), "{ok}");
            assert!(check_url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "ftp://x/",
            "http://",
            "http://1.2.3",
            "http://999.1.1.1",
            "http://01.1.1.1",
            "http://a.1",
            "http://-a.com",
            "http://a_b.com",
            "http://x:65536",
            "http://x:07000",
            "http://[::1]/",
            "http://u:p@x/",
            "http://x/ space",
        ] {
            assert!(!url_shape(bad), "{bad}");
        }
    }

    #[test]
    fn format_is_inferred_from_the_url() {
        let f = |u: &str| Format::infer(&reqwest::Url::parse(u).unwrap());
        assert_eq!(f("https://hooks.slack.com/services/T/B/X"), Format::Slack);
        assert_eq!(f("https://discord.com/api/webhooks/1/abc"), Format::Discord);
        assert_eq!(f("https://discordapp.com/api/webhooks/1/abc"), Format::Discord);
        assert_eq!(f("https://discord.com/other"), Format::Generic);
        assert_eq!(
            f("https://chat.googleapis.com/v1/spaces/x/messages"),
            Format::Gchat
        );
        assert_eq!(f("https://events.pagerduty.com/v2/enqueue"), Format::Pagerduty);
        assert_eq!(f("https://acme.webhook.office.com/webhookb2/x"), Format::Teams);
        assert_eq!(
            f("https://prod-1.westus.logic.azure.com/workflows/x"),
            Format::Teams
        );
        assert_eq!(f("http://127.0.0.1:9/hook"), Format::Generic);
    }

    #[test]
    fn destination_defaults() {
        let mut s = spec(AuthType::Header);
        s.token = Some(Secret::new("t"));
        let d = Destination::from_spec(&s, "x").unwrap();
        assert_eq!(
            d.auth,
            Auth::Header {
                name: "X-Api-Key".into(),
                token: Secret::new("t")
            }
        );
        assert!(d.is_alert_hook);
        assert_eq!(d.format, Format::Generic);
        assert_eq!(d.tuning.retry_for, Duration::from_secs(86_400));
        let mut q = spec(AuthType::Querystring);
        q.token = Some(Secret::new("t"));
        let d = Destination::from_spec(&q, "x").unwrap();
        assert_eq!(
            d.auth,
            Auth::Query {
                param: "token".into(),
                token: Secret::new("t")
            }
        );
    }

    #[test]
    fn ids_are_uuid_v4() {
        let a = new_id();
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
        assert_ne!(a, new_id());
    }
}
