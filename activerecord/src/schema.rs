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

use crate::connection::Backend;
use crate::error::{Error, Result};
use crate::executor::Executor;
use crate::model::Model;
use std::fmt;

/// Which column types a field's Rust type is stored in: one kind per supported [`Value`](crate::Value)
/// type. Which declared types each kind accepts on each backend is [`ColumnKind::accepts`].
///
/// ```
/// use activerecord::{Backend, ColumnKind};
///
/// assert!(ColumnKind::BigInt.accepts(Backend::Sqlite, "INT"));
/// assert!(ColumnKind::BigInt.accepts(Backend::Postgres, "int8"));
/// assert!(!ColumnKind::BigInt.accepts(Backend::Postgres, "int4"));
/// assert_eq!(ColumnKind::BigInt.expected(Backend::MySql), "BIGINT");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ColumnKind {
    /// `i16`.
    SmallInt,
    /// `i32`.
    Int,
    /// `i64`.
    BigInt,
    /// `f32`.
    Float,
    /// `f64`.
    Double,
    /// `bool`.
    Bool,
    /// `String`.
    Text,
    /// `Vec<u8>`.
    Bytes,
    /// `rust_decimal::Decimal`.
    Decimal,
    /// `chrono::DateTime<Utc>`.
    TimestampTz,
    /// `chrono::NaiveDateTime`.
    Timestamp,
    /// `chrono::NaiveDate`.
    Date,
    /// `uuid::Uuid`.
    Uuid,
    /// `activerecord::Json<T>`.
    Json,
    /// A type whose column types are not known (a [`Value`](crate::Value) of your own that does
    /// not say): any column type is accepted.
    Any,
}

/// What a field needs of its column: a [`ColumnKind`], and whether it may hold NULL (the field
/// is an `Option`).
///
/// ```
/// use activerecord::{ColumnKind, ColumnType, Value};
///
/// assert_eq!(i64::column_type(), ColumnType { kind: ColumnKind::BigInt, nullable: false });
/// assert!(<Option<i64>>::column_type().nullable);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ColumnType {
    /// Which column types fit.
    pub kind: ColumnKind,
    /// Whether the field takes NULL.
    pub nullable: bool,
}

impl ColumnType {
    /// A NOT NULL column of `kind`.
    pub const fn not_null(kind: ColumnKind) -> Self {
        ColumnType { kind, nullable: false }
    }
}

/// SQLite's type affinity of a declared type (section 3.1 of "Datatypes In SQLite").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Affinity {
    Integer,
    Text,
    Blob,
    Real,
    Numeric,
}

fn sqlite_affinity(declared: &str) -> Affinity {
    let t = declared.to_ascii_uppercase();
    if t.contains("INT") {
        Affinity::Integer
    } else if t.contains("CHAR") || t.contains("CLOB") || t.contains("TEXT") {
        Affinity::Text
    } else if t.contains("BLOB") || t.trim().is_empty() {
        Affinity::Blob
    } else if t.contains("REAL") || t.contains("FLOA") || t.contains("DOUB") {
        Affinity::Real
    } else {
        Affinity::Numeric
    }
}

impl ColumnKind {
    /// Whether a column declared as `declared` on `backend` stores this kind without loss.
    ///
    /// `declared` is SQLite's declared type (`INTEGER`, `VARCHAR(50)`, ...), PostgreSQL's
    /// `udt_name` (`int8`, `varchar`, `timestamptz`, ...) and MySQL's `COLUMN_TYPE` (`bigint(20)`,
    /// `tinyint(1)`, `binary(16)`, `int(11) unsigned`, ...).
    ///
    /// - SQLite, by type affinity, as lenient as SQLite: integers and `bool` take INTEGER or
    ///   NUMERIC affinity (`INT`, `BIGINT`, `BOOLEAN`); floats REAL affinity; `String` and
    ///   decimals (stored as exact text) TEXT affinity; date and time types TEXT or NUMERIC
    ///   affinity (`DATETIME`); JSON TEXT affinity or `JSON`; bytes and UUIDs BLOB affinity. A
    ///   column declared with no type takes anything.
    /// - PostgreSQL, exactly the type sqlx decodes: `int2`, `int4`, `int8`, `float4`, `float8`,
    ///   `bool`, `text`/`varchar`/`bpchar`/`citext`, `bytea`, `numeric`, `timestamptz`,
    ///   `timestamp`, `date`, `uuid`, `jsonb`/`json`.
    /// - MySQL/MariaDB: signed integer columns no wider than the field (`TINYINT`, `SMALLINT`
    ///   for `i16`; also `MEDIUMINT`, `INT` for `i32`; also `BIGINT` for `i64`), `TINYINT`/`BIT`
    ///   for `bool`, `FLOAT`, `DOUBLE`, the `CHAR`/`TEXT` family, the `BINARY`/`BLOB` family,
    ///   `DECIMAL`, `DATETIME`/`TIMESTAMP`, `DATE`, `BINARY(16)` for UUIDs, and `JSON` (MariaDB
    ///   reports it as `LONGTEXT`) or a `TEXT` type for JSON.
    pub fn accepts(self, backend: Backend, declared: &str) -> bool {
        use ColumnKind as K;
        if self == K::Any {
            return true;
        }
        let lower = declared.trim().to_ascii_lowercase();
        match backend {
            Backend::Sqlite => {
                let affinity = sqlite_affinity(&lower);
                if lower.is_empty() || lower == "any" {
                    return true;
                }
                match self {
                    K::SmallInt | K::Int | K::BigInt | K::Bool => {
                        matches!(affinity, Affinity::Integer | Affinity::Numeric)
                    }
                    K::Float | K::Double => affinity == Affinity::Real,
                    K::Text | K::Decimal => affinity == Affinity::Text,
                    K::TimestampTz | K::Timestamp | K::Date => {
                        matches!(affinity, Affinity::Text | Affinity::Numeric)
                    }
                    K::Json => affinity == Affinity::Text || lower == "json",
                    K::Bytes | K::Uuid => affinity == Affinity::Blob,
                    K::Any => true,
                }
            }
            Backend::Postgres => {
                let accepted: &[&str] = match self {
                    K::SmallInt => &["int2"],
                    K::Int => &["int4"],
                    K::BigInt => &["int8"],
                    K::Float => &["float4"],
                    K::Double => &["float8"],
                    K::Bool => &["bool"],
                    K::Text => &["text", "varchar", "bpchar", "citext"],
                    K::Bytes => &["bytea"],
                    K::Decimal => &["numeric"],
                    K::TimestampTz => &["timestamptz"],
                    K::Timestamp => &["timestamp"],
                    K::Date => &["date"],
                    K::Uuid => &["uuid"],
                    K::Json => &["jsonb", "json"],
                    K::Any => return true,
                };
                accepted.contains(&lower.as_str())
            }
            Backend::MySql => {
                let base = lower.split(['(', ' ']).next().unwrap_or_default();
                let unsigned = lower.contains("unsigned");
                let accepted: &[&str] = match self {
                    K::SmallInt => &["tinyint", "smallint"],
                    K::Int => &["tinyint", "smallint", "mediumint", "int"],
                    K::BigInt => &["tinyint", "smallint", "mediumint", "int", "bigint"],
                    K::Bool => &["tinyint", "bit"],
                    K::Float => &["float"],
                    K::Double => &["double"],
                    K::Text => &["char", "varchar", "tinytext", "text", "mediumtext", "longtext"],
                    K::Bytes => &["binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob"],
                    K::Decimal => &["decimal"],
                    K::TimestampTz | K::Timestamp => &["datetime", "timestamp"],
                    K::Date => &["date"],
                    K::Uuid => return lower == "binary(16)",
                    K::Json => &["json", "longtext", "mediumtext", "text"],
                    K::Any => return true,
                };
                let signed_integer = matches!(self, K::SmallInt | K::Int | K::BigInt);
                accepted.contains(&base) && !(signed_integer && unsigned)
            }
        }
    }

    /// The column type to declare on `backend`, as in the guide's type table.
    pub fn expected(self, backend: Backend) -> &'static str {
        use ColumnKind as K;
        let (sqlite, postgres, mysql) = match self {
            K::SmallInt => ("INTEGER", "SMALLINT", "SMALLINT"),
            K::Int => ("INTEGER", "INTEGER", "INT"),
            K::BigInt => ("INTEGER", "BIGINT", "BIGINT"),
            K::Float => ("REAL", "REAL", "FLOAT"),
            K::Double => ("REAL", "DOUBLE PRECISION", "DOUBLE"),
            K::Bool => ("BOOLEAN", "BOOLEAN", "BOOLEAN"),
            K::Text => ("TEXT", "TEXT or VARCHAR(n)", "TEXT or VARCHAR(n)"),
            K::Bytes => ("BLOB", "BYTEA", "BLOB or LONGBLOB"),
            K::Decimal => ("TEXT", "NUMERIC(p, s)", "DECIMAL(p, s)"),
            K::TimestampTz => ("TEXT", "TIMESTAMPTZ", "DATETIME(6)"),
            K::Timestamp => ("TEXT", "TIMESTAMP", "DATETIME(6)"),
            K::Date => ("TEXT", "DATE", "DATE"),
            K::Uuid => ("BLOB", "UUID", "BINARY(16)"),
            K::Json => ("TEXT", "JSONB or JSON", "JSON"),
            K::Any => ("any type", "any type", "any type"),
        };
        match backend {
            Backend::Sqlite => sqlite,
            Backend::Postgres => postgres,
            Backend::MySql => mysql,
        }
    }
}

/// One difference between a model and its table, found by
/// [`Model::check_schema`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SchemaMismatch {
    /// The table does not exist.
    MissingTable,
    /// The table has no column for this field.
    MissingColumn {
        /// The column the model reads and writes.
        column: &'static str,
    },
    /// The column's type cannot hold the field's Rust type without loss.
    IncompatibleType {
        /// The column.
        column: &'static str,
        /// Its type, as the database reports it.
        found: String,
        /// The type to declare (from the guide's type table).
        expected: &'static str,
    },
    /// The column allows NULL but its field is not an `Option`: a NULL there could not be read.
    NullableColumn {
        /// The column.
        column: &'static str,
    },
}

impl fmt::Display for SchemaMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SchemaMismatch::MissingTable => f.write_str("the table does not exist"),
            SchemaMismatch::MissingColumn { column } => write!(f, "column `{column}` is missing"),
            SchemaMismatch::IncompatibleType {
                column,
                found,
                expected,
            } => write!(f, "column `{column}` is {found}, the field needs {expected}"),
            SchemaMismatch::NullableColumn { column } => write!(
                f,
                "column `{column}` allows NULL but its field is not an Option (declare it NOT NULL, or make the field an Option)"
            ),
        }
    }
}

/// A column as the database describes it.
struct Described {
    name: String,
    /// The type to match ([`ColumnKind::accepts`]'s `declared`).
    declared: String,
    /// The type to show.
    shown: String,
    nullable: bool,
}

/// The statement that lists the columns of the table bound as its one parameter.
fn columns_sql(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "SELECT name, type, `notnull`, pk FROM pragma_table_info(?)",
        Backend::Postgres => {
            "SELECT column_name::text, udt_name::text, data_type::text, is_nullable::text \
             FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = $1::text"
        }
        Backend::MySql => {
            "SELECT CAST(COLUMN_NAME AS CHAR), CAST(COLUMN_TYPE AS CHAR), CAST(IS_NULLABLE AS CHAR) \
             FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?"
        }
    }
}

/// See [`Model::check_schema`].
pub(crate) async fn check<M: Model, C: Executor + ?Sized>(conn: &C) -> Result<()> {
    let target = conn.target(M::META.database)?;
    let backend = target.backend();
    let mut args = target.arguments();
    args.add(&M::META.table.to_owned())?;
    let described = target
        .fetch_all(columns_sql(backend), args, |row| {
            Ok(match backend {
                Backend::Sqlite => {
                    let declared: String = row.get(1)?;
                    let not_null: i64 = row.get(2)?;
                    let key: i64 = row.get(3)?;
                    // An INTEGER PRIMARY KEY is the rowid: never NULL, whatever `notnull` says.
                    let rowid = key > 0 && declared.eq_ignore_ascii_case("integer");
                    Described {
                        name: row.get(0)?,
                        shown: declared.clone(),
                        declared,
                        nullable: not_null == 0 && !rowid,
                    }
                }
                Backend::Postgres => Described {
                    name: row.get(0)?,
                    declared: row.get(1)?,
                    shown: row.get(2)?,
                    nullable: row.get::<String>(3)? == "YES",
                },
                Backend::MySql => {
                    let declared: String = row.get(1)?;
                    Described {
                        name: row.get(0)?,
                        shown: declared.clone(),
                        declared,
                        nullable: row.get::<String>(2)? == "YES",
                    }
                }
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
