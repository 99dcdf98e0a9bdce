//! SQL text: identifier quoting and placeholders for each backend, and the statements of each
//! model, built once per model and backend and then reused for every call.
//!
//! Values never enter SQL text here: every value is a placeholder, bound at execution.

use crate::backend::Backend;
use crate::model::ModelMeta;
use std::fmt::Write;
use std::sync::OnceLock;

/// Appends `ident` quoted for `backend`: `"name"` (PostgreSQL) or `` `name` `` (MySQL, SQLite),
/// with any quote character inside doubled.
///
/// SQLite takes a double-quoted identifier that names no column as a string literal, so a
/// missing column would read back its own name; a backtick-quoted one is always an identifier
/// ("no such column").
pub(crate) fn push_ident(out: &mut String, backend: Backend, ident: &str) {
    let quote = backend.dialect().quote();
    out.push(quote);
    for c in ident.chars() {
        if c == quote {
            out.push(quote);
        }
        out.push(c);
    }
    out.push(quote);
}

/// Appends the placeholder for the `position`-th parameter (1-based).
pub(crate) fn push_placeholder(out: &mut String, backend: Backend, position: usize) {
    backend.dialect().push_placeholder(out, position);
}

/// Appends `ident, ident, ...` for `columns`.
fn push_column_list<'a>(out: &mut String, backend: Backend, columns: impl Iterator<Item = &'a str>) {
    for (i, column) in columns.enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        push_ident(out, backend, column);
    }
}

/// Appends `p1, p2, ...` for `count` parameters numbered from `first`.
fn push_placeholders(out: &mut String, backend: Backend, first: usize, count: usize) {
    for i in 0..count {
        if i > 0 {
            out.push_str(", ");
        }
        push_placeholder(out, backend, first + i);
    }
}

/// `INSERT INTO <table> (<every column>) VALUES (...), (...)` for `rows` rows, parameters row by
/// row in column order.
pub(crate) fn insert_rows(backend: Backend, meta: &ModelMeta, rows: usize) -> String {
    let mut insert = String::from("INSERT INTO ");
    push_ident(&mut insert, backend, meta.table);
    insert.push_str(" (");
    push_column_list(&mut insert, backend, meta.columns.iter().copied());
    insert.push_str(") VALUES ");
    let width = meta.columns.len();
    for row in 0..rows {
        if row > 0 {
            insert.push_str(", ");
        }
        insert.push('(');
        push_placeholders(&mut insert, backend, 1 + row * width, width);
        insert.push(')');
    }
    insert
}

/// The fixed statements of one model on one backend.
#[derive(Debug)]
pub struct Statements {
    /// `SELECT <columns> FROM <table>`: the start of every query of the model.
    pub(crate) select: String,
    /// `... WHERE <key> = ?`.
    pub(crate) find: String,
    /// `find`, locking the row until the end of the transaction (SQLite's write scopes hold the
    /// database's write lock already).
    pub(crate) find_for_update: String,
    /// Inserts every column but the key, returning the generated key (`RETURNING` on SQLite and
    /// PostgreSQL; MySQL reports it as the last insert id instead).
    pub(crate) insert_generating_key: String,
    /// Inserts every column, key included.
    pub(crate) insert: String,
    /// Inserts every column, or updates the row with that key if there is one.
    pub(crate) upsert: String,
    /// Updates every column but the key, parameters in column order and the key last.
    pub(crate) update: String,
    /// Deletes by key.
    pub(crate) delete: String,
}

impl Statements {
    fn build(backend: Backend, meta: &ModelMeta) -> Statements {
        let key = meta.key_column();
        let non_key = || {
            meta.columns
                .iter()
                .enumerate()
                .filter(move |(i, _)| *i != meta.key_index)
                .map(|(_, c)| *c)
        };
        let non_key_count = meta.columns.len() - 1;
        let mut table = String::new();
        push_ident(&mut table, backend, meta.table);
        let mut quoted_key = String::new();
        push_ident(&mut quoted_key, backend, key);

        let mut select = String::from("SELECT ");
        push_column_list(&mut select, backend, meta.columns.iter().copied());
        let _ = write!(select, " FROM {table}");

        let where_key = |first_param: usize| {
            let mut s = format!(" WHERE {quoted_key} = ");
            push_placeholder(&mut s, backend, first_param);
            s
        };
        let dialect = backend.dialect();
        let find = format!("{select}{}", where_key(1));
        let find_for_update = format!("{find}{}", dialect.for_update());

        let mut insert_generating_key = format!("INSERT INTO {table} ");
        if non_key_count == 0 {
            insert_generating_key.push_str(dialect.insert_defaults());
        } else {
            insert_generating_key.push('(');
            push_column_list(&mut insert_generating_key, backend, non_key());
            insert_generating_key.push_str(") VALUES (");
            push_placeholders(&mut insert_generating_key, backend, 1, non_key_count);
            insert_generating_key.push(')');
        }
        if dialect.returns_generated_key() {
            let _ = write!(insert_generating_key, " RETURNING {quoted_key}");
        }

        let insert = insert_rows(backend, meta, 1);

        let mut upsert = insert.clone();
        let assignments: Vec<String> = non_key()
            .map(|column| {
                let mut quoted = String::new();
                push_ident(&mut quoted, backend, column);
                quoted
            })
            .collect();
        dialect.push_upsert(&mut upsert, &quoted_key, &assignments);

        let mut update = format!("UPDATE {table} SET ");
        if non_key_count == 0 {
            // Nothing to change: a statement that still reports whether the row exists.
            let _ = write!(update, "{quoted_key} = {quoted_key}");
        }
        for (i, column) in non_key().enumerate() {
            if i > 0 {
                update.push_str(", ");
            }
            push_ident(&mut update, backend, column);
            update.push_str(" = ");
            push_placeholder(&mut update, backend, i + 1);
        }
        update.push_str(&where_key(non_key_count + 1));

        let delete = format!("DELETE FROM {table}{}", where_key(1));

        Statements {
            select,
            find,
            find_for_update,
            insert_generating_key,
            insert,
            upsert,
            update,
            delete,
        }
    }
}

/// The statements of one model, built on first use for each backend.
///
/// `#[derive(ActiveRecord)]` puts one in a `static` per model.
#[derive(Debug)]
pub struct StatementCache([OnceLock<Statements>; 3]);

impl StatementCache {
    /// An empty cache.
    #[allow(clippy::new_without_default)] // used in `static` items, where only a `const fn` will do
    pub const fn new() -> Self {
        StatementCache([OnceLock::new(), OnceLock::new(), OnceLock::new()])
    }

    /// The statements for `backend`, built from `meta` the first time.
    pub fn get(&self, backend: Backend, meta: &ModelMeta) -> &Statements {
        self.0[backend as usize].get_or_init(|| Statements::build(backend, meta))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACCOUNTS: ModelMeta = ModelMeta {
        table: "accounts",
        columns: &["id", "owner", "balance"],
        key_index: 0,
        key_generated: true,
        database: None,
    };

    #[test]
    fn identifiers_are_quoted_with_quotes_doubled() {
        let mut s = String::new();
        push_ident(&mut s, Backend::Postgres, r#"we"ird"#);
        push_ident(&mut s, Backend::MySql, "we`ird");
        assert_eq!(s, r#""we""ird"`we``ird`"#);
    }

    #[test]
    fn postgres_statements_number_their_parameters() {
        let s = Statements::build(Backend::Postgres, &ACCOUNTS);
        assert_eq!(
            s.find,
            r#"SELECT "id", "owner", "balance" FROM "accounts" WHERE "id" = $1"#
        );
        assert_eq!(
            s.insert_generating_key,
            r#"INSERT INTO "accounts" ("owner", "balance") VALUES ($1, $2) RETURNING "id""#
        );
        assert_eq!(
            s.update,
            r#"UPDATE "accounts" SET "owner" = $1, "balance" = $2 WHERE "id" = $3"#
        );
        assert_eq!(
            s.upsert,
            r#"INSERT INTO "accounts" ("id", "owner", "balance") VALUES ($1, $2, $3) ON CONFLICT ("id") DO UPDATE SET "owner" = excluded."owner", "balance" = excluded."balance""#
        );
    }

    #[test]
    fn mysql_statements_use_backticks_and_no_returning() {
        let s = Statements::build(Backend::MySql, &ACCOUNTS);
        assert_eq!(
            s.insert_generating_key,
            "INSERT INTO `accounts` (`owner`, `balance`) VALUES (?, ?)"
        );
        assert_eq!(s.delete, "DELETE FROM `accounts` WHERE `id` = ?");
        assert!(
            s.upsert
                .ends_with("ON DUPLICATE KEY UPDATE `owner` = VALUES(`owner`), `balance` = VALUES(`balance`)")
        );
    }

    #[test]
    fn key_only_models_still_have_valid_statements() {
        let meta = ModelMeta {
            columns: &["id"],
            ..ACCOUNTS
        };
        let s = Statements::build(Backend::Sqlite, &meta);
        assert_eq!(
            s.insert_generating_key,
            "INSERT INTO `accounts` DEFAULT VALUES RETURNING `id`"
        );
        assert_eq!(s.update, "UPDATE `accounts` SET `id` = `id` WHERE `id` = ?");
    }
}
