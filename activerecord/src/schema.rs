//! Schema checks: whether a table has the columns, column types and NULL rules a model needs.
//!
//! [`Model::check_schema`] reads the table's columns from the
//! database (SQLite `pragma_table_info`, PostgreSQL and MySQL/MariaDB
//! `information_schema.columns`, the table name bound as a parameter) and compares each of the
//! model's columns with them: a missing table, a missing column, a column type the field's Rust
//! type cannot be stored in (the types of the guide's type table, `docs/types.md`; on SQLite
//! by type affinity), and a column that allows NULL for a field that is not an `Option`. Every
//! difference is reported at once in [`Error::SchemaMismatch`].
//! Columns of the table that the model does not use are not reported.

use crate::backend::Backend;
pub use crate::backend::{ColumnKind, ColumnType};
pub use crate::error::SchemaMismatch;
use crate::error::{Error, Result};
use crate::executor::Executor;
use crate::model::Model;

/// A column as the database describes it.
struct Described {
    name: String,
    /// The type to match ([`ColumnKind::accepts`]'s `declared`).
    declared: String,
    /// The type to show.
    shown: String,
    nullable: bool,
}

/// See [`Model::check_schema`].
pub(crate) async fn check<M: Model, C: Executor + ?Sized>(conn: &C) -> Result<()> {
    let target = conn.target(M::META.database)?;
    let backend = target.backend();
    let mut args = target.arguments();
    args.add(&M::META.table.to_owned())?;
    // Every engine's statement answers the same shape: name, type to match, type to show, and
    // whether the column takes NULL.
    let described = target
        .fetch_all(backend.dialect().columns_sql(), args, |row| {
            Ok(Described {
                name: row.get(0)?,
                declared: row.get(1)?,
                shown: row.get(2)?,
                nullable: row.get::<i64>(3)? != 0,
            })
        })
        .await?;
    let mismatches = compare(backend, M::META.columns, &M::column_types(), &described);
    if mismatches.is_empty() {
        Ok(())
    } else {
        Err(Error::SchemaMismatch {
            connection: target.connection_name().to_owned(),
            table: M::META.table,
            mismatches,
        })
    }
}

fn compare(
    backend: Backend,
    columns: &'static [&'static str],
    types: &[ColumnType],
    described: &[Described],
) -> Vec<SchemaMismatch> {
    if described.is_empty() {
        return vec![SchemaMismatch::MissingTable];
    }
    let mut mismatches = Vec::new();
    for (&column, wanted) in columns.iter().zip(types) {
        let Some(found) = described.iter().find(|d| d.name == column) else {
            mismatches.push(SchemaMismatch::MissingColumn { column });
            continue;
        };
        if !wanted.kind.accepts(backend, &found.declared) {
            mismatches.push(SchemaMismatch::IncompatibleType {
                column,
                found: found.shown.clone(),
                expected: wanted.kind.expected(backend),
            });
        }
        if found.nullable && !wanted.nullable {
            mismatches.push(SchemaMismatch::NullableColumn { column });
        }
    }
    mismatches
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_is_as_lenient_as_its_affinity() {
        for declared in ["INTEGER", "INT", "BIGINT", "int8", "BOOLEAN", "NUMERIC"] {
            assert!(ColumnKind::BigInt.accepts(Backend::Sqlite, declared), "{declared}");
        }
        assert!(ColumnKind::Bool.accepts(Backend::Sqlite, "BOOLEAN"));
        assert!(ColumnKind::Text.accepts(Backend::Sqlite, "VARCHAR(50)"));
        assert!(ColumnKind::Timestamp.accepts(Backend::Sqlite, "DATETIME"));
        assert!(!ColumnKind::BigInt.accepts(Backend::Sqlite, "TEXT"));
        assert!(
            !ColumnKind::Decimal.accepts(Backend::Sqlite, "NUMERIC"),
            "NUMERIC would round"
        );
        assert!(!ColumnKind::Double.accepts(Backend::Sqlite, "INTEGER"));
    }

    #[test]
    fn mysql_integers_must_be_signed_and_no_wider_than_the_field() {
        assert!(ColumnKind::BigInt.accepts(Backend::MySql, "int(11)"));
        assert!(!ColumnKind::SmallInt.accepts(Backend::MySql, "bigint(20)"));
        assert!(!ColumnKind::BigInt.accepts(Backend::MySql, "bigint(20) unsigned"));
        assert!(ColumnKind::Bool.accepts(Backend::MySql, "tinyint(1)"));
        assert!(ColumnKind::Uuid.accepts(Backend::MySql, "binary(16)"));
        assert!(!ColumnKind::Uuid.accepts(Backend::MySql, "binary(36)"));
    }

    #[test]
    fn mismatches_are_all_listed_in_column_order() {
        let described = vec![
            Described {
                name: "a".into(),
                declared: "TEXT".into(),
                shown: "TEXT".into(),
                nullable: true,
            },
            Described {
                name: "c".into(),
                declared: "INTEGER".into(),
                shown: "INTEGER".into(),
                nullable: false,
            },
        ];
        let types = [ColumnType::not_null(ColumnKind::BigInt); 3];
        let found = compare(Backend::Sqlite, &["a", "b", "c"], &types, &described);
        assert_eq!(
            found,
            vec![
                SchemaMismatch::IncompatibleType {
                    column: "a",
                    found: "TEXT".into(),
                    expected: "INTEGER"
                },
                SchemaMismatch::NullableColumn { column: "a" },
                SchemaMismatch::MissingColumn { column: "b" },
            ]
        );
        assert_eq!(
            compare(Backend::Sqlite, &["a"], &types, &[]),
            vec![SchemaMismatch::MissingTable]
        );
    }
}
