//! Locks and semaphores over the HTTP API: Consul's `api.Lock` and
//! `api.Semaphore` loops, byte-compatible with them, with the decisions in
//! `tribune_core::coord`.
//!
//! A [`Contender`] creates its own session (TTL 15 s, renewed every half of
//! it on a background thread), acquires, and hands back a [`Held`] carrying a
//! **fencing token**: the coordination key's ModifyIndex at acquisition. Raft
//! indexes only grow, so every later holder's token is larger than every
//! earlier one, even across deletion and re-creation of the key; a protected
//! resource that remembers the largest token it has seen can refuse a stale
//! holder. [`Contender::monitor`] blocks until the lock is lost.

use super::api::{Api, ApiError, Query, SessionSpec};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};
use tribune_core::coord::{
    contender_key, lock_cleanup, lock_held, lock_key, lock_step, semaphore_cleanup,
    semaphore_release, semaphore_step, semaphore_view, CoordError, LockStep, SemaphoreStep,
    LOCK_FLAG_VALUE, SEMAPHORE_FLAG_VALUE, SESSION_TTL_SECS,
};

/// How long one blocking read waits (Consul's `DefaultLockWaitTime`).
const WAIT: Duration = Duration::from_secs(15);
/// Pause after an acquire refused by lock-delay (`DefaultLockRetryTime`).
const LOCK_RETRY: Duration = Duration::from_secs(5);

#[derive(Clone, Debug)]
pub struct Options {
    /// Key prefix, leading `/` already trimmed.
    pub prefix: String,
    /// 1: a lock; more: a semaphore with that many slots.
    pub limit: u64,
    pub session_name: String,
    /// Lock-delay of our session (`None`: the server's 15 s default).
    pub lock_delay: Option<Duration>,
    /// Give up acquiring after this long (`-timeout`); `None`: wait forever.
    pub timeout: Option<Duration>,
    /// 5xx/transport errors the monitor rides out before declaring loss.
    pub monitor_retries: u32,
    pub monitor_retry_time: Duration,
}

/// An acquired lock or semaphore slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Held {
    pub session: String,
    /// The coordination key (`<prefix>/.lock`).
    pub key: String,
    /// The fencing token (see the module docs).
    pub fence: u64,
}

#[derive(Debug)]
pub enum LockError {
    Api(String, ApiError),
    Coord(CoordError),
}

impl std::fmt::Display for LockError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LockError::Api(context, e) => write!(f, "{context}: {e}"),
            LockError::Coord(e) => write!(f, "{e}"),
        }
    }
}

impl From<CoordError> for LockError {
    fn from(e: CoordError) -> LockError {
        LockError::Coord(e)
    }
}

fn api_err(context: &'static str) -> impl Fn(ApiError) -> LockError {
    move |e| LockError::Api(context.to_string(), e)
}

/// One contender: its session and the loops that use it.
pub struct Contender {
    api: Api,
    opts: Options,
    session: Option<String>,
    renewing: Option<Arc<AtomicBool>>,
}

impl Contender {
    pub fn new(api: Api, opts: Options) -> Contender {
        Contender {
            api,
            opts,
            session: None,
            renewing: None,
        }
    }

    pub fn options(&self) -> &Options {
        &self.opts
    }

    fn is_semaphore(&self) -> bool {
        self.opts.limit > 1
    }

    /// The session, created on first use and renewed in the background.
    pub fn session(&mut self) -> Result<String, LockError> {
        if let Some(id) = &self.session {
            return Ok(id.clone());
        }
        let spec = SessionSpec {
            name: self.opts.session_name.clone(),
            ttl: Duration::from_secs(SESSION_TTL_SECS),
            behavior: if self.is_semaphore() {
                "delete"
            } else {
                "release"
            },
            lock_delay: self.opts.lock_delay,
        };
        let id = self
            .api
            .session_create(&spec)
            .map_err(api_err("failed to create session"))?;
        let stop = Arc::new(AtomicBool::new(false));
        spawn_renewer(self.api.clone(), id.clone(), spec.ttl, Arc::clone(&stop));
        self.session = Some(id.clone());
        self.renewing = Some(stop);
        Ok(id)
    }

    /// Blocks until acquired (`Some`), or `None` when `cancel` is set or the
    /// timeout passes first.
    pub fn acquire(&mut self, cancel: &AtomicBool) -> Result<Option<Held>, LockError> {
        let session = self.session()?;
        let deadline = self.opts.timeout.map(|t| Instant::now() + t);
        if self.is_semaphore() {
            self.acquire_semaphore(&session, cancel, deadline)
        } else {
            self.acquire_lock(&session, cancel, deadline)
        }
    }

    fn acquire_lock(
        &self,
        session: &str,
        cancel: &AtomicBool,
        deadline: Option<Instant>,
    ) -> Result<Option<Held>, LockError> {
        let key = lock_key(&self.opts.prefix);
        let mut index = 0;
        loop {
            let Some(wait) = next_wait(cancel, deadline) else {
                return Ok(None);
            };
            let q = Query {
                index,
                wait: Some(wait),
                consistent: false,
            };
            let (pair, last) = self
                .api
                .kv_get(&key, &q)
                .map_err(api_err("failed to read lock"))?;
            match lock_step(pair.as_ref(), session)? {
                LockStep::Held => return Ok(pair.map(|p| self.held(session, &key, p.modify_index))),
                LockStep::Wait => index = last,
                LockStep::Acquire => {
                    let acquired = self
                        .api
                        .kv_put(
                            &key,
                            b"",
                            vec![
                                ("acquire", Some(session.to_string())),
                                ("flags", Some(LOCK_FLAG_VALUE.to_string())),
                            ],
                        )
                        .map_err(api_err("failed to acquire lock"))?;
                    // Read back: the fencing token is the acquiring write's index.
                    let fresh = Query {
                        consistent: true,
                        ..Query::default()
                    };
                    let (pair, last) = self
                        .api
                        .kv_get(&key, &fresh)
                        .map_err(api_err("failed to read lock"))?;
                    if acquired && lock_held(pair.as_ref(), session) {
                        return Ok(pair.map(|p| self.held(session, &key, p.modify_index)));
                    }
                    match pair {
                        // Someone else won the race: block on the key.
                        Some(p) if !p.session.is_empty() => index = last,
                        // Refused while free: a lock-delay is in effect.
                        _ => {
                            if !super::sleep_unless_stopped(LOCK_RETRY, cancel, deadline) {
                                return Ok(None);
                            }
                            index = 0;
                        }
                    }
                }
            }
        }
    }

    fn acquire_semaphore(
        &self,
        session: &str,
        cancel: &AtomicBool,
        deadline: Option<Instant>,
    ) -> Result<Option<Held>, LockError> {
        let prefix = &self.opts.prefix;
        let made = self
            .api
            .kv_put(
                &contender_key(prefix, session),
                b"",
                vec![
                    ("acquire", Some(session.to_string())),
                    ("flags", Some(SEMAPHORE_FLAG_VALUE.to_string())),
                ],
            )
            .map_err(api_err("failed to make contender entry"))?;
        if !made {
            return Err(LockError::Api(
                "failed to acquire contender entry".into(),
                ApiError::Decode("the session may have been invalidated".into()),
            ));
        }
        let key = lock_key(prefix);
        let mut index = 0;
        loop {
            let Some(wait) = next_wait(cancel, deadline) else {
                return Ok(None);
            };
            let q = Query {
                index,
                wait: Some(wait),
                consistent: index == 0,
            };
            let (pairs, last) = self
                .api
                .kv_list(&list_prefix(prefix), &q)
                .map_err(api_err("failed to read prefix"))?;
            let view = semaphore_view(prefix, &pairs, self.opts.limit)?;
            match semaphore_step(&view, session) {
                SemaphoreStep::Held => {
                    return Ok(Some(self.held(session, &key, view.cas_index)));
                }
                SemaphoreStep::Wait => index = last,
                SemaphoreStep::Claim {
                    document,
                    cas_index,
                } => {
                    self.put_holders(&key, &document, cas_index)?;
                    // Won or lost the CAS, read again at once: a win shows
                    // as Held with the new index as the fencing token.
                    index = 0;
                }
            }
        }
    }

    /// Writes the semaphore's holders document by check-and-set.
    fn put_holders(&self, key: &str, document: &[u8], cas: u64) -> Result<bool, LockError> {
        self.api
            .kv_put(
                key,
                document,
                vec![
                    ("cas", Some(cas.to_string())),
                    ("flags", Some(SEMAPHORE_FLAG_VALUE.to_string())),
                ],
            )
            .map_err(api_err("failed to update lock"))
    }

    fn held(&self, session: &str, key: &str, fence: u64) -> Held {
        Held {
            session: session.to_string(),
            key: key.to_string(),
            fence,
        }
    }

    /// A handle that watches the lock from another thread.
    pub fn monitor(&self) -> Monitor {
        Monitor {
            api: self.api.clone(),
            opts: self.opts.clone(),
        }
    }

    /// Gives up the lock or slot and destroys the session.
    pub fn release(&mut self) -> Result<(), LockError> {
        let Some(session) = self.session.clone() else {
            return Ok(());
        };
        if self.is_semaphore() {
            self.release_semaphore(&session)?;
        } else {
            self.api
                .kv_put(
                    &lock_key(&self.opts.prefix),
                    b"",
                    vec![
                        ("release", Some(session.clone())),
                        ("flags", Some(LOCK_FLAG_VALUE.to_string())),
                    ],
                )
                .map_err(api_err("failed to release lock"))?;
        }
        self.end_session();
        Ok(())
    }

    fn release_semaphore(&self, session: &str) -> Result<(), LockError> {
        let key = lock_key(&self.opts.prefix);
        let fresh = Query {
            consistent: true,
            ..Query::default()
        };
        loop {
            let (pair, _) = self
                .api
                .kv_get(&key, &fresh)
                .map_err(api_err("failed to read lock"))?;
            let Some((document, cas)) = semaphore_release(pair.as_ref(), session)? else {
                break;
            };
            let done = self.put_holders(&key, &document, cas)?;
            if done {
                break;
            }
        }
        self.api
            .kv_delete(&contender_key(&self.opts.prefix, session), None)
            .map_err(api_err("failed to remove contender entry"))?;
        Ok(())
    }

    /// Stops renewing and destroys the session (best effort: a session
    /// that cannot be destroyed expires on its own within 2×TTL).
    pub fn end_session(&mut self) {
        if let Some(stop) = self.renewing.take() {
            stop.store(true, Ordering::SeqCst);
        }
        if let Some(session) = self.session.take() {
            let _ = self.api.session_destroy(&session);
        }
    }

    /// Deletes the coordination key when nobody uses it any more. Returns
    /// `Err(Coord(InUse))` when someone does (not a failure for the caller).
    pub fn cleanup(&self) -> Result<(), LockError> {
        let fresh = Query {
            consistent: true,
            ..Query::default()
        };
        let key = lock_key(&self.opts.prefix);
        let cas = if self.is_semaphore() {
            let (pairs, _) = self
                .api
                .kv_list(&list_prefix(&self.opts.prefix), &fresh)
                .map_err(api_err("failed to read prefix"))?;
            semaphore_cleanup(&self.opts.prefix, &pairs, self.opts.limit)?
        } else {
            let (pair, _) = self
                .api
                .kv_get(&key, &fresh)
                .map_err(api_err("failed to read lock"))?;
            lock_cleanup(pair.as_ref())?
        };
        let Some(cas) = cas else {
            return Ok(());
        };
        let deleted = self
            .api
            .kv_delete(&key, Some(cas))
            .map_err(api_err("failed to remove lock"))?;
        if deleted {
            Ok(())
        } else {
            Err(LockError::Coord(CoordError::InUse))
        }
    }
}

impl Drop for Contender {
    fn drop(&mut self) {
        if let Some(stop) = self.renewing.take() {
            stop.store(true, Ordering::SeqCst);
        }
    }
}

/// The listing prefix of a semaphore: the cleaned prefix plus `/`, so a
/// sibling prefix (`db` vs `db2`) is never read as contenders.
fn list_prefix(prefix: &str) -> String {
    let key = lock_key(prefix);
    key.strip_suffix(tribune_core::coord::LOCK_KEY_NAME)
        .unwrap_or(&key)
        .to_string()
}

/// The next blocking wait, or `None` when cancelled or out of time.
fn next_wait(cancel: &AtomicBool, deadline: Option<Instant>) -> Option<Duration> {
    if cancel.load(Ordering::SeqCst) {
        return None;
    }
    match deadline {
        None => Some(WAIT),
        Some(deadline) => {
            let left = deadline.checked_duration_since(Instant::now())?;
            (!left.is_zero()).then_some(left.min(WAIT))
        }
    }
}

/// Renews `session` every TTL/2 until `stop`; on errors retries each second
/// until a TTL has passed since the last success, then gives up (the lock
/// monitor notices the loss).
fn spawn_renewer(api: Api, session: String, ttl: Duration, stop: Arc<AtomicBool>) {
    thread::spawn(move || {
        let mut last_ok = Instant::now();
        let mut pause = ttl / 2;
        while super::sleep_unless_stopped(pause, &stop, None) {
            pause = match api.session_renew(&session) {
                Ok(true) => {
                    last_ok = Instant::now();
                    ttl / 2
                }
                Ok(false) => return,
                Err(_) if last_ok.elapsed() < ttl => Duration::from_secs(1),
                Err(_) => return,
            };
        }
    });
}

/// Watches a held lock with consistent blocking reads.
pub struct Monitor {
    api: Api,
    opts: Options,
}

impl Monitor {
    /// Blocks while the lock is ours; returns when it is lost (or cannot be
    /// confirmed after `monitor_retries` retryable errors).
    pub fn run(&self, held: &Held) {
        let mut index = 0;
        let mut retries = self.opts.monitor_retries;
        loop {
            let q = Query {
                index,
                wait: None,
                consistent: true,
            };
            let read = if self.opts.limit > 1 {
                self.api
                    .kv_list(&list_prefix(&self.opts.prefix), &q)
                    .map(|(pairs, last)| {
                        let ours = semaphore_view(&self.opts.prefix, &pairs, self.opts.limit)
                            .is_ok_and(|view| view.holders.holders.contains_key(&held.session));
                        (ours, last)
                    })
            } else {
                self.api
                    .kv_get(&held.key, &q)
                    .map(|(pair, last)| (lock_held(pair.as_ref(), &held.session), last))
            };
            match read {
                Ok((true, last)) => {
                    index = last;
                    retries = self.opts.monitor_retries;
                }
                Ok((false, _)) => return,
                Err(e) if e.retryable() && retries > 0 => {
                    retries -= 1;
                    index = 0;
                    thread::sleep(self.opts.monitor_retry_time);
                }
                Err(_) => return,
            }
        }
    }
}
