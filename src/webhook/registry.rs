//! Every destination the agent knows: those from the TOML file (read-only)
//! and those created through the management API (kept in
//! `state_dir/destinations.json`). Routes notifications to their delivery
//! tasks and applies creates, updates and deletes at once.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::deliver::{self, Cmd, DestState, DestStatus};
use super::{Destination, DestinationSpec, Kind, Message, Violation, sign};
use crate::alert::{Notification, Status};
use crate::store::{self, StateFile};
use crate::timefmt::to_millis;

/// Where a destination was defined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// `[[webhook]]` in the TOML file: read-only through the API.
    Config,
    /// Created through the management API.
    Api,
}

/// One known destination.
#[derive(Debug)]
pub struct Entry {
    pub id: String,
    pub origin: Origin,
    pub created_ms: u64,
    /// As written (secrets included; never sent back unmasked).
    pub spec: DestinationSpec,
    pub dest: Destination,
    key: Vec<u8>,
    pub status: Arc<Mutex<DestStatus>>,
    tx: mpsc::UnboundedSender<Cmd>,
}

/// Why a change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    #[error("no destination with id {0:?}")]
    NotFound(String),
    #[error("destination {0:?} is defined in the configuration file and is read-only here")]
    ReadOnly(String),
    #[error("invalid destination")]
    Invalid(Vec<Violation>),
    #[error("the destination could not be saved: {0}")]
    Storage(String),
}

/// An API destination as stored: its spec with the secrets in clear.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Stored {
    id: String,
    created_ms: u64,
    spec: Value,
}

/// The stable id of a TOML destination: a name-based UUID.
pub fn config_id(name: &str) -> String {
    let h = crate::payload::md5_hex(format!("hostbeat-config-webhook:{name}").as_bytes());
    format!(
        "{}-{}-3{}-8{}-{}",
        &h[..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

/// The spec as JSON with secrets in clear, for `destinations.json` only.
fn stored_spec(spec: &DestinationSpec) -> Value {
    let dur = |d: Option<std::time::Duration>| d.map(|d| format!("{}ms", d.as_millis()));
    let mut v = json!({
        "name": spec.name,
        "url": spec.url,
        "type": spec.format,
        "isAlertHook": spec.is_alert_hook,
        "authType": spec.auth_type,
        "userName": spec.user_name,
        "password": spec.password.as_ref().map(|s| s.expose()),
        "token": spec.token.as_ref().map(|s| s.expose()),
        "headerName": spec.header_name,
        "queryParam": spec.query_param,
        "secret": spec.secret.as_ref().map(|s| s.expose()),
        "timeout": dur(spec.timeout),
        "retry_for": dur(spec.retry_for),
        "backoff": dur(spec.backoff),
        "backoff_max": dur(spec.backoff_max),
        "max_per_minute": spec.max_per_minute,
    });
    if let Some(o) = v.as_object_mut() {
        o.retain(|_, v| !v.is_null());
    }
    v
}

/// The destinations, their tasks and the API's store.
#[derive(Debug)]
pub struct Registry {
    entries: Vec<Entry>,
    host: String,
    state_dir: PathBuf,
    client: Option<reqwest::Client>,
    api_file: StateFile,
}

impl Default for Registry {
    fn default() -> Self {
        Registry::empty(Path::new("/nonexistent"), "")
    }
}

impl Registry {
    /// A registry without destinations or HTTP client (nothing to deliver).
    pub fn empty(state_dir: &Path, host: &str) -> Self {
        Registry {
            entries: Vec::new(),
            host: host.to_owned(),
            state_dir: state_dir.to_path_buf(),
            client: None,
            api_file: StateFile::new(state_dir.join("destinations.json")),
        }
    }

    /// Loads the TOML destinations and the API-created ones, and starts a
    /// delivery task for each (on the current runtime).
    pub fn start(config: &[DestinationSpec], state_dir: &Path, client: reqwest::Client, host: &str) -> Self {
        let mut r = Registry::empty(state_dir, host);
        r.reload(config, client, host);
        r
    }

    /// Applies the TOML destinations (SIGHUP): changed ones are updated in
    /// place (their queues kept), removed ones deleted, new ones started.
    /// The first call also loads the API-created destinations.
    pub fn reload(&mut self, config: &[DestinationSpec], client: reqwest::Client, host: &str) {
        self.host = host.to_owned();
        let first = self.client.is_none();
        self.client = Some(client);
        let mut wanted = Vec::new();
        for spec in config {
            let name = spec.name.clone().unwrap_or_default();
            match Destination::from_spec(spec, &name) {
                Ok(dest) => wanted.push((config_id(&name), spec.clone(), dest)),
                Err(v) => tracing::error!(webhook = %name, "skipped invalid destination: {v:?}"),
            }
        }
        let gone: Vec<String> = self
            .entries
            .iter()
            .filter(|e| e.origin == Origin::Config && !wanted.iter().any(|(id, ..)| *id == e.id))
            .map(|e| e.id.clone())
            .collect();
        for id in gone {
            let pos = self
                .entries
                .iter()
                .position(|e| e.id == id)
                .expect("listed above");
            let e = self.entries.remove(pos);
            let _ = e.tx.send(Cmd::Delete);
            tracing::info!(webhook = %e.dest.name, "destination removed from the configuration");
        }
        for (id, spec, dest) in wanted {
            match self.entries.iter_mut().find(|e| e.id == id) {
                Some(e) if e.spec != spec => {
                    let key = dest
                        .secret
                        .as_ref()
                        .and_then(|s| sign::decode_secret(s.expose()).ok())
                        .unwrap_or_else(|| e.key.clone());
                    let _ = e.tx.send(Cmd::Update(Box::new(dest.clone()), key.clone()));
                    (e.spec, e.dest, e.key) = (spec, dest, key);
                }
                Some(_) => {}
                None => self.add(id, Origin::Config, 0, spec, dest),
            }
        }
        if first {
            self.load_stored();
        }
    }

    /// Starts the API-created destinations kept in `destinations.json`.
    fn load_stored(&mut self) {
        let stored: Vec<Stored> = store::load_json(self.api_file.path()).unwrap_or_default();
        for s in stored {
            let spec = serde_json::from_value::<DestinationSpec>(s.spec);
            match spec.map_err(|e| vec![("spec", e.to_string())]).and_then(|spec| {
                let dest = Destination::from_spec(&spec, &s.id)?;
                Ok((spec, dest))
            }) {
                Ok((spec, dest)) => self.add(s.id, Origin::Api, s.created_ms, spec, dest),
                Err(v) => {
                    tracing::error!(id = %s.id, "skipped a stored destination that no longer validates: {v:?}")
                }
            }
        }
    }

    /// Starts the task of a destination and records it.
    fn add(&mut self, id: String, origin: Origin, created_ms: u64, spec: DestinationSpec, dest: Destination) {
        let Some(client) = self.client.clone() else { return };
        let path = deliver::state_path(&self.state_dir, &id);
        let mut state: DestState = store::load_json(&path).unwrap_or_default();
        let (key, generated) = deliver::signing_key(&dest, &mut state);
        let mut file = StateFile::new(path);
        if generated {
            tracing::info!(
                webhook = %dest.name,
                path = %file.path().display(),
                "generated a signing secret (set `secret` to choose one); it is kept in the state file"
            );
            file.save(&state);
        }
        if !state.pending.is_empty() {
            tracing::info!(webhook = %dest.name, pending = state.pending.len(), "resuming pending notifications");
        }
        let status = Arc::new(Mutex::new(DestStatus::default()));
        let tx = deliver::spawn_worker(dest.clone(), key.clone(), state, file, client, status.clone());
        self.entries.push(Entry {
            id,
            origin,
            created_ms,
            spec,
            dest,
            key,
            status,
            tx,
        });
    }

    /// Every destination, TOML ones first.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The destination with `id`.
    pub fn get(&self, id: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.id == id)
    }

    /// Queues a notification for the rule's destinations (or every alert hook).
    pub fn notify(&self, n: &Notification) {
        let message = Message {
            kind: match n.alert.status {
                Status::Firing => Kind::Firing,
                Status::Resolved => Kind::Resolved,
            },
            id: super::new_id(),
            timestamp: SystemTime::now(),
            host: self.host.clone(),
            text: n.summary.clone(),
            alert: Some(n.alert.clone()),
        };
        for e in &self.entries {
            let wanted = match &n.webhooks {
                Some(names) => e.origin == Origin::Config && names.contains(&e.dest.name),
                None => e.dest.is_alert_hook,
            };
            if wanted {
                let _ = e.tx.send(Cmd::Job(deliver::job(&message, &e.dest)));
            }
        }
    }

    /// What a test send needs: the destination, its key, the client and a
    /// test message. Sent outside any lock.
    pub fn test_send(
        &self,
        id: &str,
    ) -> Result<(Destination, Vec<u8>, reqwest::Client, deliver::Job), RegistryError> {
        let e = self
            .get(id)
            .ok_or_else(|| RegistryError::NotFound(id.to_owned()))?;
        let client = self
            .client
            .clone()
            .ok_or_else(|| RegistryError::Storage("no HTTP client".into()))?;
        let message = Message {
            kind: Kind::Test,
            id: super::new_id(),
            timestamp: SystemTime::now(),
            host: self.host.clone(),
            text: format!("hostbeat test notification from {}", self.host),
            alert: None,
        };
        let job = deliver::job(&message, &e.dest);
        Ok((e.dest.clone(), e.key.clone(), client, job))
    }

    /// Validates and adds an API destination; returns its id and, when the
    /// agent generated the signing secret, that secret (shown once).
    pub fn create(&mut self, mut spec: DestinationSpec) -> Result<(String, Option<String>), RegistryError> {
        let id = super::new_id();
        let problems = spec.validate(false);
        if !problems.is_empty() {
            return Err(RegistryError::Invalid(problems));
        }
        let generated = spec.secret.is_none().then(sign::generate_secret);
        if let Some(s) = &generated {
            spec.secret = Some(crate::secret::Secret::new(s.clone()));
        }
        let dest = Destination::from_spec(&spec, &id).map_err(RegistryError::Invalid)?;
        let created_ms = to_millis(SystemTime::now());
        self.save_api(Some((&id, created_ms, &spec)), None)?;
        self.add(id.clone(), Origin::Api, created_ms, spec, dest);
        Ok((id, generated))
    }

    /// Replaces an API destination (same validation as create). A secret
    /// left out keeps the current one.
    pub fn update(&mut self, id: &str, mut spec: DestinationSpec) -> Result<(), RegistryError> {
        let current = self
            .get(id)
            .ok_or_else(|| RegistryError::NotFound(id.to_owned()))?;
        if current.origin == Origin::Config {
            return Err(RegistryError::ReadOnly(id.to_owned()));
        }
        let problems = spec.validate(false);
        if !problems.is_empty() {
            return Err(RegistryError::Invalid(problems));
        }
        if spec.secret.is_none() {
            spec.secret = current.spec.secret.clone();
        }
        let dest = Destination::from_spec(&spec, id).map_err(RegistryError::Invalid)?;
        let key = dest
            .secret
            .as_ref()
            .and_then(|s| sign::decode_secret(s.expose()).ok())
            .unwrap_or_else(|| current.key.clone());
        let created_ms = current.created_ms;
        self.save_api(Some((id, created_ms, &spec)), Some(id))?;
        let e = self
            .entries
            .iter_mut()
            .find(|e| e.id == id)
            .expect("checked above");
        let _ = e.tx.send(Cmd::Update(Box::new(dest.clone()), key.clone()));
        e.spec = spec;
        e.dest = dest;
        e.key = key;
        Ok(())
    }

    /// Deletes an API destination, its queue and its state.
    pub fn delete(&mut self, id: &str) -> Result<(), RegistryError> {
        let current = self
            .get(id)
            .ok_or_else(|| RegistryError::NotFound(id.to_owned()))?;
        if current.origin == Origin::Config {
            return Err(RegistryError::ReadOnly(id.to_owned()));
        }
        self.save_api(None, Some(id))?;
        let pos = self
            .entries
            .iter()
            .position(|e| e.id == id)
            .expect("checked above");
        let e = self.entries.remove(pos);
        let _ = e.tx.send(Cmd::Delete);
        Ok(())
    }

    /// Writes `destinations.json`: the API entries, without `remove`, plus
    /// `add` (replacing an entry with the same id). Nothing changes in
    /// memory unless this succeeds.
    fn save_api(
        &self,
        add: Option<(&str, u64, &DestinationSpec)>,
        remove: Option<&str>,
    ) -> Result<(), RegistryError> {
        let mut stored: Vec<Stored> = self
            .entries
            .iter()
            .filter(|e| e.origin == Origin::Api && Some(e.id.as_str()) != remove)
            .map(|e| Stored {
                id: e.id.clone(),
                created_ms: e.created_ms,
                spec: stored_spec(&e.spec),
            })
            .collect();
        if let Some((id, created_ms, spec)) = add {
            let s = Stored {
                id: id.to_owned(),
                created_ms,
                spec: stored_spec(spec),
            };
            match stored.iter().position(|x| x.id == id) {
                Some(i) => stored[i] = s,
                None => stored.push(s),
            }
        }
        store::save_json(self.api_file.path(), &stored).map_err(|e| {
            tracing::error!("{e}");
            RegistryError::Storage("the state directory is not writable".into())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;
    use crate::webhook::AuthType;

    fn spec(url: &str) -> DestinationSpec {
        DestinationSpec {
            name: Some("n".into()),
            url: Some(url.into()),
            auth_type: Some(AuthType::Bearer),
            token: Some(Secret::new("tok")),
            ..DestinationSpec::default()
        }
    }

    #[test]
    fn config_ids_are_stable_uuids() {
        let a = config_id("ops");
        assert_eq!(a, config_id("ops"));
        assert_ne!(a, config_id("ops2"));
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "3");
    }

    #[test]
    fn stored_spec_round_trips_with_secrets() {
        let mut s = spec("http://127.0.0.1:9/x");
        s.retry_for = Some(std::time::Duration::from_secs(90));
        let v = stored_spec(&s);
        assert_eq!(v["token"], "tok");
        let back: DestinationSpec = serde_json::from_value(v).unwrap();
        assert_eq!(back, s);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn create_update_delete_persist() {
        let dir = tempfile::tempdir().unwrap();
        let client = crate::http::client().unwrap();
        let toml = vec![spec("http://127.0.0.1:9/toml")];
        let mut r = Registry::start(&toml, dir.path(), client.clone(), "h");
        let (id, secret) = r.create(spec("http://127.0.0.1:9/a")).unwrap();
        assert!(secret.unwrap().starts_with("whsec_"));
        assert_eq!(r.entries().len(), 2);

        // a restart finds it, with the same secret
        let again = Registry::start(&toml, dir.path(), client.clone(), "h");
        assert_eq!(
            again.get(&id).unwrap().spec.secret,
            r.get(&id).unwrap().spec.secret
        );

        let mut bad = spec("ftp://x");
        bad.token = None;
        match r.update(&id, bad) {
            Err(RegistryError::Invalid(v)) => assert_eq!(v.len(), 2),
            other => panic!("{other:?}"),
        }
        r.update(&id, spec("http://127.0.0.1:9/b")).unwrap();
        assert_eq!(r.get(&id).unwrap().dest.url.path(), "/b");
        let toml_id = config_id("n");
        assert_eq!(
            r.update(&toml_id, spec("http://x/")),
            Err(RegistryError::ReadOnly(toml_id.clone()))
        );
        assert_eq!(r.delete(&toml_id), Err(RegistryError::ReadOnly(toml_id)));
        r.delete(&id).unwrap();
        assert_eq!(r.delete(&id), Err(RegistryError::NotFound(id.clone())));
        let after = Registry::start(&toml, dir.path(), client, "h");
        assert!(after.get(&id).is_none());
        assert_eq!(after.entries().len(), 1);
    }
}
