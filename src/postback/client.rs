//! One HTTP POST of one payload, and its classification.

use std::time::{Duration, SystemTime};

use reqwest::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};

use super::policy::{self, Verdict};
use crate::config::Postback;
use crate::http::{describe, truncate};

/// Why a client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("postback.url: {0}")]
    Url(String),
    #[error("postback.forwarded_host: not a valid header value")]
    ForwardedHost,
}

/// What one attempt produced.
#[derive(Debug)]
pub struct Attempt {
    pub verdict: Verdict,
    /// HTTP status, when a response came.
    pub status: Option<u16>,
    /// Error text or the start of the response body, for the log. Never holds
    /// the URL (it may carry the token).
    pub detail: String,
}

/// Posts payloads to the configured receiver.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    /// The URL with the token in its query: never logged.
    url: reqwest::Url,
    forwarded_host: Option<HeaderValue>,
    timeout: Duration,
}

impl Client {
    /// A client for `cfg` (which must have a `url`) over the shared `http` client.
    pub fn new(http: reqwest::Client, cfg: &Postback) -> Result<Self, ClientError> {
        let raw = cfg
            .url
            .as_deref()
            .ok_or_else(|| ClientError::Url("not set".into()))?;
        let mut url = reqwest::Url::parse(raw).map_err(|e| ClientError::Url(e.to_string()))?;
        if let Some(token) = &cfg.token {
            url.query_pairs_mut().append_pair("token", token.expose());
        }
        let forwarded_host = cfg
            .forwarded_host
            .as_deref()
            .map(|h| HeaderValue::from_str(h).map_err(|_| ClientError::ForwardedHost))
            .transpose()?;
        Ok(Client {
            http,
            url,
            forwarded_host,
            timeout: cfg.timeout,
        })
    }

    /// Sends one payload's [`crate::payload::Payload::form_body`] and classifies the outcome.
    pub async fn post(&self, form_body: Vec<u8>) -> Attempt {
        let mut req = self
            .http
            .post(self.url.clone())
            .timeout(self.timeout)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(form_body);
        if let Some(h) = &self.forwarded_host {
            req = req.header("X-Forwarded-Host", h.clone());
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                return Attempt {
                    verdict: Verdict::Failed,
                    status: None,
                    detail: describe(e),
                };
            }
        };
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let verdict = policy::classify(status, retry_after.as_deref(), SystemTime::now());
        let detail = if verdict == Verdict::Delivered {
            String::new()
        } else {
            let body = resp.text().await.unwrap_or_default();
            truncate(body.trim(), 512)
        };
        Attempt {
            verdict,
            status: Some(status),
            detail,
        }
    }
}
