//! The IO edge of device tokens: one task owns the [`TokenSet`] and its state file, makes and
//! revokes tokens on request, and publishes the accepted hashes ([`TokenIndex`]) through a
//! `watch` channel. The gate reads the latest index without waiting; a revocation is published
//! before it is answered, so the next request with that token is refused, and the streams of
//! that device, which wait on the channel, end.
//!
//! The file is written whole, to a temporary file beside it that is then renamed over it, so a
//! crash leaves the old file or the new one. Uses are noted in memory and written at most once a
//! minute, and when xg2g stops; so is a revocation whose own write failed (it is refused at once
//! all the same, and the admin is told the file was not written).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use super::tokens::{TokenError, TokenIndex, TokenRecord, TokenSet};

/// How often noted uses are written, at most.
const FLUSH_EVERY: Duration = Duration::from_secs(60);

/// What went wrong with the token store. Names the file; never holds a token.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("auth.tokens_file {}: cannot read it: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("auth.tokens_file {}: {source} (fix or remove the file; removing it revokes every device token)", path.display())]
    Invalid {
        path: PathBuf,
        #[source]
        source: TokenError,
    },
    #[error("auth.tokens_file {}: cannot write it: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Name(TokenError),
    #[error("no device token with this id")]
    NotFound,
    #[error("the token store has stopped")]
    Stopped,
}

impl StoreError {
    /// Stable error codes for the HTTP edge.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Read { .. } | Self::Invalid { .. } | Self::Write { .. } => "token-store-failed",
            Self::Name(_) => "invalid-parameter",
            Self::NotFound => "token-not-found",
            Self::Stopped => "shutting-down",
        }
    }
}

/// Reads the state file; a missing file is an empty set.
///
/// # Errors
///
/// The file exists but cannot be read, or is not a token file ([`StoreError::Invalid`] names it).
pub fn load(path: &Path) -> Result<TokenSet, StoreError> {
    match std::fs::read_to_string(path) {
        Ok(text) => TokenSet::parse(&text).map_err(|source| StoreError::Invalid {
            path: path.to_owned(),
            source,
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(TokenSet::default()),
        Err(source) => Err(StoreError::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

enum Command {
    Create {
        name: String,
        reply: oneshot::Sender<Result<(String, TokenRecord), StoreError>>,
    },
    List {
        reply: oneshot::Sender<Vec<TokenRecord>>,
    },
    Revoke {
        id: String,
        reply: oneshot::Sender<Result<TokenRecord, StoreError>>,
    },
    Used {
        id: String,
        at: u64,
    },
}

/// The handle the HTTP side holds; cheap to clone.
#[derive(Clone)]
pub struct TokenStore {
    commands: mpsc::Sender<Command>,
    index: watch::Receiver<Arc<TokenIndex>>,
}

impl TokenStore {
    /// Starts the task that owns `set` and the file at `path`; it stops with `shutdown`,
    /// writing noted uses first.
    pub fn spawn(path: PathBuf, set: TokenSet, shutdown: CancellationToken) -> Self {
        let (commands, inbox) = mpsc::channel(1024);
        let (publish, index) = watch::channel(Arc::new(set.index()));
        let owner = Owner {
            path,
            set,
            publish,
            dirty: false,
        };
        tokio::spawn(owner.run(inbox, shutdown));
        Self { commands, index }
    }

    /// The device id `token` belongs to, now.
    pub fn lookup(&self, token: &str) -> Option<String> {
        self.index.borrow().lookup(token).map(str::to_owned)
    }

    /// Notes a use of device `id`; dropped when the task is busy (it is only a hint).
    pub fn used(&self, id: &str, at: u64) {
        let _ = self.commands.try_send(Command::Used { id: id.to_owned(), at });
    }

    /// Resolves once device `id`'s token is revoked (or the store stops).
    pub fn revoked(&self, id: String) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut index = self.index.clone();
        async move {
            let _ = index.wait_for(|index| !index.has_id(&id)).await;
        }
    }

    /// Makes a token for device `name`; the token is in the answer and nowhere else.
    pub async fn create(&self, name: String) -> Result<(String, TokenRecord), StoreError> {
        self.ask(|reply| Command::Create { name, reply }).await?
    }

    pub async fn list(&self) -> Result<Vec<TokenRecord>, StoreError> {
        self.ask(|reply| Command::List { reply }).await
    }

    /// Revokes device `id`'s token: refused from the moment this returns.
    pub async fn revoke(&self, id: String) -> Result<TokenRecord, StoreError> {
        self.ask(|reply| Command::Revoke { id, reply }).await?
    }

    async fn ask<T>(&self, command: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(command(reply))
            .await
            .map_err(|_| StoreError::Stopped)?;
        answer.await.map_err(|_| StoreError::Stopped)
    }
}

struct Owner {
    path: PathBuf,
    set: TokenSet,
    publish: watch::Sender<Arc<TokenIndex>>,
    /// Uses noted, or a revocation not written, since the last write.
    dirty: bool,
}

impl Owner {
    async fn run(mut self, mut inbox: mpsc::Receiver<Command>, shutdown: CancellationToken) {
        let mut flush = tokio::time::interval(FLUSH_EVERY);
        flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = flush.tick() => self.flush().await,
                command = inbox.recv() => match command {
                    Some(command) => self.handle(command).await,
                    None => break,
                },
            }
        }
        self.flush().await;
    }

    async fn handle(&mut self, command: Command) {
        match command {
            Command::Create { name, reply } => {
                let mut next = self.set.clone();
                let minted = next.mint(&name, rand::random(), rand::random(), super::unix_now());
                let answer = match minted {
                    Err(e) => Err(StoreError::Name(e)),
                    // Written before it is handed out: a token that works must survive a restart.
                    Ok(minted) => match self.write(&next).await {
                        Ok(()) => {
                            self.set = next;
                            self.publish.send_replace(Arc::new(self.set.index()));
                            tracing::info!(id = %minted.1.id, name = %minted.1.name, "Made a device token.");
                            Ok(minted)
                        }
                        Err(e) => Err(e),
                    },
                };
                let _ = reply.send(answer);
            }
            Command::List { reply } => {
                let _ = reply.send(self.set.records().to_vec());
            }
            Command::Revoke { id, reply } => {
                let answer = match self.set.revoke(&id) {
                    None => Err(StoreError::NotFound),
                    Some(record) => {
                        // Refused at once, whatever happens to the file.
                        self.publish.send_replace(Arc::new(self.set.index()));
                        tracing::info!(id = %record.id, name = %record.name, "Revoked a device token.");
                        let written = self.write(&self.set.clone()).await;
                        // Not written: a restart would bring the token back, and the admin,
                        // trying again, hears `token-not-found`. Flushes retry the write.
                        self.dirty |= written.is_err();
                        written.map(|()| record)
                    }
                };
                let _ = reply.send(answer);
            }
            Command::Used { id, at } => self.dirty |= self.set.touch(&id, at),
        }
    }

    async fn flush(&mut self) {
        if !self.dirty {
            return;
        }
        match self.write(&self.set.clone()).await {
            Ok(()) => self.dirty = false,
            Err(error) => tracing::warn!(%error, "Could not note device token uses."),
        }
    }

    /// Writes `set` whole through a temporary file and a rename, on a blocking thread.
    async fn write(&self, set: &TokenSet) -> Result<(), StoreError> {
        let path = self.path.clone();
        let text = set.to_json();
        let result = tokio::task::spawn_blocking(move || write_atomically(&path, text.as_bytes()))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        result.map_err(|source| StoreError::Write {
            path: self.path.clone(),
            source,
        })
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tokens_survive_a_restart_and_revocation_is_seen_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/tokens.json");
        assert_eq!(load(&path).unwrap(), TokenSet::default(), "no file, no tokens");
        let shutdown = CancellationToken::new();
        let store = TokenStore::spawn(path.clone(), TokenSet::default(), shutdown.clone());
        let (token, record) = store.create("Plex".into()).await.unwrap();
        assert_eq!(store.lookup(&token).as_deref(), Some(record.id.as_str()));
        assert!(!std::fs::read_to_string(&path).unwrap().contains(&token));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }

        // A second store on the same file knows the token.
        let again = TokenStore::spawn(path.clone(), load(&path).unwrap(), shutdown.clone());
        assert_eq!(again.lookup(&token).as_deref(), Some(record.id.as_str()));
        assert_eq!(again.list().await.unwrap(), std::slice::from_ref(&record));

        let revoked = store.revoked(record.id.clone());
        store.revoke(record.id.clone()).await.unwrap();
        assert_eq!(store.lookup(&token), None, "refused once revoke returns");
        tokio::time::timeout(Duration::from_secs(1), revoked)
            .await
            .expect("a waiting stream hears of the revocation");
        assert!(matches!(store.revoke(record.id).await, Err(StoreError::NotFound)));
        assert_eq!(load(&path).unwrap(), TokenSet::default());
        assert!(matches!(store.create("\n".into()).await, Err(StoreError::Name(_))));
        shutdown.cancel();
    }

    #[tokio::test]
    async fn a_revocation_that_could_not_be_written_is_written_by_the_next_flush() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.json");
        let mut set = TokenSet::default();
        let (token, record) = set.mint("Plex", [1; 32], [1; 8], 1).unwrap();
        std::fs::write(&path, set.to_json()).unwrap();
        let (publish, index) = watch::channel(Arc::new(set.index()));
        let mut owner = Owner {
            path: path.clone(),
            set,
            publish,
            dirty: false,
        };
        // A directory where the temporary file goes: the write fails, even for root.
        let blocker = dir.path().join("tokens.json.tmp");
        std::fs::create_dir(&blocker).unwrap();
        let (reply, answer) = oneshot::channel();
        owner
            .handle(Command::Revoke {
                id: record.id.clone(),
                reply,
            })
            .await;
        assert!(matches!(answer.await.unwrap(), Err(StoreError::Write { .. })));
        assert_eq!(index.borrow().lookup(&token), None, "refused all the same");
        assert_eq!(
            load(&path).unwrap().records(),
            std::slice::from_ref(&record),
            "still in the file"
        );

        std::fs::remove_dir(&blocker).unwrap();
        owner.flush().await;
        assert_eq!(load(&path).unwrap(), TokenSet::default(), "written by the next flush");
    }

    #[test]
    fn a_corrupt_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.json");
        std::fs::write(&path, "not json").unwrap();
        let error = load(&path).unwrap_err().to_string();
        assert!(
            error.contains(&path.display().to_string()) && error.contains("not a token file"),
            "{error}"
        );
    }
}
