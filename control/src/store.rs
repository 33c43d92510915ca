//! Durable state: the state file, its history, the policy file, and the
//! audit record of every change.
//!
//! Files under the storage directory:
//!
//! ```text
//! state.json               the current State (version inside)
//! history/<version>.json   every version ever applied: {meta, state}
//! evidence/                the durable evidence log (crate::log)
//! ```
//!
//! A change is applied in this order, each file written atomically (write,
//! fsync, rename, fsync of the directory): the history entry, `state.json`
//! (from here on the change is made), `<run>/policy.json` (the dataplanes
//! pick it up), then a `control_change` record in the evidence log,
//! committed before the API answers (also when the policy file could not
//! be written: the answer is then a 500 saying so). A crash between two steps leaves
//! `state.json` as the truth; at start control rewrites the policy file
//! from it.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use odock_dataplane::evidence::{self, Attrs, Evidence, Kind, Stamp, attr};
use odock_dataplane::runtime::control_link::write_atomic;
use serde::{Deserialize, Serialize};

use crate::drain::{SharedLog, lock};
use crate::log::{Origin, Storage, now_ns};
use crate::state::{ApiError, Change, State};

/// The worker index control's own records carry.
pub const CONTROL_WORKER: u32 = u32::MAX;

/// Who made a change: the peer's credentials and role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// Peer uid.
    pub uid: u32,
    /// Peer gid.
    pub gid: u32,
    /// Peer pid.
    pub pid: i32,
    /// Its role.
    pub role: Role,
}

/// What a peer may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Read everything.
    ReadOnly,
    /// Read and change everything.
    Admin,
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let role = match self.role {
            Role::ReadOnly => "read_only",
            Role::Admin => "admin",
        };
        write!(
            f,
            "uid={} gid={} pid={} role={role}",
            self.uid, self.gid, self.pid
        )
    }
}

/// One version in the history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryMeta {
    /// The version it made.
    pub version: u64,
    /// When, UNIX epoch ms.
    pub time_ms: u64,
    /// Who.
    pub actor: String,
    /// What (`binding.enable`, ...).
    pub action: String,
    /// To what (`binding/name`).
    pub resource: String,
}

#[derive(Serialize, Deserialize)]
struct HistoryFile {
    meta: HistoryMeta,
    state: State,
}

/// Why the store cannot open.
#[derive(Debug)]
pub enum StoreError {
    /// A file could not be read or written.
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// `state.json` is not a valid state.
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The parse error.
        source: serde_json::Error,
    },
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            StoreError::Corrupt { path, source } => {
                write!(f, "{} is not a valid state file: {source}", path.display())
            }
        }
    }
}

impl std::error::Error for StoreError {}

/// The durable state (see the [module docs](self)).
pub struct Store<S: Storage> {
    dir: PathBuf,
    run_dir: PathBuf,
    state: State,
    log: SharedLog<S>,
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl<S: Storage> Store<S> {
    /// Opens the state under `dir` (empty state if there is none) and
    /// writes the policy file for it into `run_dir`.
    ///
    /// # Errors
    /// [`StoreError`] naming the file.
    pub fn open(dir: &Path, run_dir: &Path, log: SharedLog<S>) -> Result<Store<S>, StoreError> {
        let history = dir.join("history");
        fs::create_dir_all(&history).map_err(io_at(&history))?;
        let path = dir.join("state.json");
        let state = match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| StoreError::Corrupt {
                path: path.clone(),
                source,
            })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => State::default(),
            Err(e) => return Err(io_at(&path)(e)),
        };
        let store = Store {
            dir: dir.to_path_buf(),
            run_dir: run_dir.to_path_buf(),
            state,
            log,
        };
        store
            .state
            .policy_file()
            .write_atomic(run_dir)
            .map_err(io_at(&run_dir.join("policy.json")))?;
        Ok(store)
    }

    /// The current state.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// Applies `change` for `actor`; returns the new version.
    ///
    /// # Errors
    /// The validation's [`ApiError`]; 500 when a file could not be
    /// written (the state is then unchanged).
    pub fn change(&mut self, change: &Change, actor: &Actor) -> Result<u64, ApiError> {
        let next = self.state.apply(change)?;
        self.commit(next, change.action(), &change.resource(), actor)
    }

    /// Makes the state of version `to` current again, as a new version.
    ///
    /// # Errors
    /// 404 when the history has no such version; 500 on a write failure.
    pub fn rollback(&mut self, to: u64, actor: &Actor) -> Result<u64, ApiError> {
        let mut old = if to == 0 {
            State::default()
        } else {
            let path = self.history_path(to);
            let bytes = fs::read(&path).map_err(|_| {
                ApiError::field(404, "version", format!("no version {to} in the history"))
            })?;
            let file: HistoryFile = serde_json::from_slice(&bytes).map_err(|e| {
                ApiError::new(
                    500,
                    format!("history file {} is corrupt: {e}", path.display()),
                )
            })?;
            file.state
        };
        old.version = self.state.version + 1;
        self.commit(old, "state.rollback", &format!("version/{to}"), actor)
    }

    /// The history, oldest first.
    pub fn history(&self) -> Vec<HistoryMeta> {
        let mut out = Vec::new();
        if let Ok(entries) = fs::read_dir(self.dir.join("history")) {
            for e in entries.flatten() {
                if let Ok(bytes) = fs::read(e.path())
                    && let Ok(file) = serde_json::from_slice::<HistoryFile>(&bytes)
                {
                    out.push(file.meta);
                }
            }
        }
        out.sort_by_key(|m| m.version);
        out
    }

    fn history_path(&self, version: u64) -> PathBuf {
        self.dir.join("history").join(format!("{version:020}.json"))
    }

    fn commit(
        &mut self,
        next: State,
        action: &str,
        resource: &str,
        actor: &Actor,
    ) -> Result<u64, ApiError> {
        let version = next.version;
        let now = now_ns();
        let meta = HistoryMeta {
            version,
            time_ms: now / 1_000_000,
            actor: actor.to_string(),
            action: action.to_owned(),
            resource: resource.to_owned(),
        };
        let fail = |what: &str, e: io::Error| {
            ApiError::new(500, format!("control could not write {what}: {e}"))
        };
        let history = serde_json::to_vec(&HistoryFile {
            meta,
            state: next.clone(),
        })
        .map_err(|e| ApiError::new(500, e.to_string()))?;
        write_atomic(&self.history_path(version), &history).map_err(|e| fail("the history", e))?;
        let state =
            serde_json::to_vec_pretty(&next).map_err(|e| ApiError::new(500, e.to_string()))?;
        write_atomic(&self.dir.join("state.json"), &state)
            .map_err(|e| fail("the state file", e))?;
        self.state = next;
        // From here the change is made: its audit record is written
        // whatever happens to the policy file (which is redone from
        // state.json at start), so no change goes unrecorded.
        let policy = self.state.policy_file().write_atomic(&self.run_dir);
        let audit = self.audit(version, now, action, resource, actor);
        match (policy, audit) {
            (Ok(()), Ok(())) => Ok(version),
            (Err(e), Ok(())) => Err(fail(
                "the policy file (the state changed and the change is recorded; the file is rewritten at restart)",
                e,
            )),
            (_, Err(e)) => Err(e),
        }
    }

    /// Appends and commits the `control_change` record of a change.
    fn audit(
        &self,
        version: u64,
        now: u64,
        action: &str,
        resource: &str,
        actor: &Actor,
    ) -> Result<(), ApiError> {
        let actor_text = actor.to_string();
        let pairs = [
            (attr::ACTOR, actor_text.as_str()),
            (attr::ACTION, action),
            (attr::RESOURCE, resource),
        ];
        let record = Evidence {
            count: version,
            attrs: Attrs::new(&pairs),
            ..Evidence::new(Kind::ControlChange)
        };
        let stamp = Stamp {
            sequence: version,
            timestamp_ns: now,
            worker: CONTROL_WORKER,
        };
        let mut buf = vec![0; evidence::encoded_len(&record)];
        evidence::encode(&stamp, &record, &mut buf)
            .map_err(|e| ApiError::new(500, e.to_string()))?;
        let mut log = lock(&self.log);
        log.append(Origin::default(), &buf)
            .and_then(|_| log.commit())
            .map(|_| ())
            .map_err(|e| {
                ApiError::new(
                    500,
                    format!("the change was made but its audit record failed: {e}"),
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::{Log, LogConfig, MemStorage};
    use crate::state::ScopeDef;
    use std::sync::{Arc, Mutex};

    fn control_changes(log: &SharedLog<MemStorage>) -> Vec<(u64, String, String)> {
        let l = lock(log);
        let mut out = Vec::new();
        l.snapshot()
            .scan(l.storage(), 0, |e| {
                let r = evidence::decode(&e.payload).unwrap();
                assert_eq!(r.evidence.kind, Kind::ControlChange);
                let a = r.evidence.attrs;
                out.push((
                    r.stamp.sequence,
                    a.get(attr::ACTION).unwrap().to_owned(),
                    a.get(attr::ACTOR).unwrap().to_owned(),
                ));
                true
            })
            .unwrap();
        out
    }

    #[test]
    fn every_change_is_recorded_even_when_the_policy_file_fails() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        fs::create_dir_all(&run).unwrap();
        let (log, _) = Log::open(MemStorage::new(), LogConfig::default()).unwrap();
        let log = Arc::new(Mutex::new(log));
        let mut store = Store::open(&dir.path().join("state"), &run, Arc::clone(&log)).unwrap();
        let actor = Actor {
            uid: 7,
            gid: 8,
            pid: 9,
            role: Role::Admin,
        };
        let scope = |name: &str| ScopeDef {
            name: name.into(),
            tenant: Some("acme".into()),
            virtual_key: None,
            environment: None,
            model: None,
            mcp_server: None,
            mcp_tool: None,
        };
        assert_eq!(
            store.change(&Change::PutScope(scope("a"), false), &actor),
            Ok(1)
        );
        // The policy file cannot be replaced (a directory is in its way).
        fs::remove_file(run.join("policy.json")).unwrap();
        fs::create_dir(run.join("policy.json")).unwrap();
        fs::write(run.join("policy.json").join("x"), b"x").unwrap();
        let e = store
            .change(&Change::PutScope(scope("b"), false), &actor)
            .unwrap_err();
        assert_eq!(e.status, 500);
        assert!(e.error.contains("policy file"), "{e}");
        assert_eq!(store.state().version, 2, "the change is made");
        let refused = store.change(&Change::RemoveScope("nope".into()), &actor);
        assert_eq!(refused.unwrap_err().status, 404);
        let changes = control_changes(&log);
        assert_eq!(
            changes,
            [
                (1, "scope.add".into(), "uid=7 gid=8 pid=9 role=admin".into()),
                (2, "scope.add".into(), "uid=7 gid=8 pid=9 role=admin".into()),
            ],
            "both changes recorded (who, what), the refused one not"
        );
    }
}
