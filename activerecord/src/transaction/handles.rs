//! The handles that find their connection by name and by the task's open scopes: [`Using`]
//! (from [`ConnectionManager::using`]) and [`Ambient`].

use super::{ScopeOptions, innermost_frame};
use crate::connection::ConnectionManager;
use crate::error::{Error, Result};
use crate::executor::{Resolve, Target};
use std::borrow::Cow;

/// A connection chosen by name: the innermost open transaction scope on it in the current task,
/// else its pool. Returned by [`ConnectionManager::using`]; an unknown name is reported when the
/// handle is used.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> activerecord::Result<()> {
/// use activerecord::{ActiveRecord, ConnectionManager, Model};
///
/// #[derive(ActiveRecord, Debug)]
/// struct Note { id: Option<i64>, body: String }
///
/// let db = ConnectionManager::configure("using_doc", "sqlite::memory:").await?;
/// db.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)").await?;
/// let notes = ConnectionManager::using("using_doc");
/// Note::create(&notes, Note { id: None, body: "hello".into() }).await?;
/// assert_eq!(Note::count(&notes).await?, 1);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[must_use = "a `Using` does nothing until it runs a model call or a transaction"]
pub struct Using {
    pub(crate) name: String,
    pub(crate) options: ScopeOptions,
}

impl Using {
    /// The connection name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl ConnectionManager {
    /// A handle on the connection `name`: an [`Executor`](crate::Executor) for model calls, and the way into
    /// transaction scopes.
    pub fn using(name: &str) -> Using {
        Using {
            name: name.to_owned(),
            options: ScopeOptions::default(),
        }
    }
}

/// The innermost open scope on `name` in this task, else the pool.
fn scope_or_pool(name: &str) -> Result<Target<'static>> {
    match innermost_frame(Some(name)) {
        Some(frame) => Ok(Target::Tx(Cow::Owned(frame.participant.tx.clone()))),
        None => Ok(Target::Pool(Cow::Owned(ConnectionManager::get(name)?))),
    }
}

impl Resolve for Using {
    fn target(&self, _: Option<&'static str>) -> Result<Target<'_>> {
        scope_or_pool(&self.name)
    }
}

/// The connection a model would choose by itself: see [`Executor`](crate::Executor).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> activerecord::Result<()> {
/// use activerecord::{ActiveRecord, Ambient, ConnectionManager, Model};
///
/// #[derive(ActiveRecord, Debug)]
/// #[activerecord(database = "ambient_doc")]
/// struct Note { id: Option<i64>, body: String }
///
/// let db = ConnectionManager::configure("ambient_doc", "sqlite::memory:").await?;
/// db.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)").await?;
/// let note = Note::create(&Ambient, Note { id: None, body: "hello".into() }).await?;
/// assert_eq!(Note::find(&Ambient, note.id.unwrap()).await?.body, "hello");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Ambient;

impl Resolve for Ambient {
    fn target(&self, model_database: Option<&'static str>) -> Result<Target<'_>> {
        if let Some(name) = model_database {
            return scope_or_pool(name);
        }
        match innermost_frame(None) {
            Some(frame) => Ok(Target::Tx(Cow::Owned(frame.participant.tx.clone()))),
            None => Err(Error::NoConnectionChosen),
        }
    }
}
