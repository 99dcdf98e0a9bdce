//! Column values: the Rust types a model field may have, and how each one is bound to a statement
//! and read back from a row on every backend.
//!
//! One model definition works on SQLite, PostgreSQL and MySQL/MariaDB, so a field type must be
//! storable on all three. [`Value`] is implemented for the types of that matrix; a field of any
//! other type is a compile error that lists them. Where a backend has no native column type for
//! a value (decimals on SQLite) it is stored as text, losslessly.

use crate::backend::Backend;
use crate::backend::{ColumnKind, ColumnType};
use crate::error::{Error, Result};
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use sqlx::error::BoxDynError;
use sqlx::mysql::{MySqlArguments, MySqlRow};
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::sqlite::{SqliteArguments, SqliteRow};
use sqlx::{Arguments as _, Row as _, ValueRef as _};

pub use sqlx::types::Json;

/// The bound parameters of one statement, for the backend it will run on.
///
/// Built by the model and query code; users meet it only when implementing [`Value`] for a type of
/// their own.
#[derive(Debug)]
pub enum Arguments {
    /// Parameters for SQLite.
    Sqlite(SqliteArguments),
    /// Parameters for PostgreSQL.
    Postgres(PgArguments),
    /// Parameters for MySQL/MariaDB.
    MySql(MySqlArguments),
}

impl Arguments {
    /// Empty arguments for `backend`.
    ///
    /// ```
    /// use activerecord::{Arguments, Backend};
    ///
    /// let mut args = Arguments::new(Backend::Postgres);
    /// args.add(&42_i64).unwrap();
    /// assert_eq!(args.len(), 1);
    /// ```
    pub fn new(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => Arguments::Sqlite(SqliteArguments::default()),
            Backend::Postgres => Arguments::Postgres(PgArguments::default()),
            Backend::MySql => Arguments::MySql(MySqlArguments::default()),
        }
    }

    /// Appends one value.
    ///
    /// A value outside what the backend stores is [`Error::ValueOutOfRange`] (see
    /// [`OutOfRange`]); any other failure to encode it is [`Error::Encode`].
    ///
    /// ```
    /// use activerecord::{Arguments, Backend, Error};
    /// use chrono::NaiveDate;
    ///
    /// let mut args = Arguments::new(Backend::MySql);
    /// let too_early = NaiveDate::from_ymd_opt(999, 12, 31).unwrap();
    /// let err = args.add(&too_early).unwrap_err();
    /// assert!(matches!(err, Error::ValueOutOfRange { parameter: 1, backend: Backend::MySql, .. }), "{err}");
    /// ```
    pub fn add<V: Value + ?Sized>(&mut self, value: &V) -> Result<()> {
        let parameter = self.len() + 1;
        value
            .bind(self)
            .map_err(|source| match source.downcast::<OutOfRange>() {
                Ok(out) => Error::ValueOutOfRange {
                    parameter,
                    value: out.value,
                    backend: out.backend,
                    range: out.range,
                },
                Err(source) => Error::Encode { parameter, source },
            })
    }

    /// The backend the arguments are for.
    pub fn backend(&self) -> Backend {
        match self {
            Arguments::Sqlite(_) => Backend::Sqlite,
            Arguments::Postgres(_) => Backend::Postgres,
            Arguments::MySql(_) => Backend::MySql,
        }
    }

    /// How many values have been added.
    pub fn len(&self) -> usize {
        match self {
            Arguments::Sqlite(a) => a.len(),
            Arguments::Postgres(a) => a.len(),
            Arguments::MySql(a) => a.len(),
        }
    }

    /// Whether no value has been added.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A borrowed result row of any backend.
#[derive(Debug, Clone, Copy)]
pub enum RowRef<'r> {
    /// A SQLite row.
    Sqlite(&'r SqliteRow),
    /// A PostgreSQL row.
    Postgres(&'r PgRow),
    /// A MySQL/MariaDB row.
    MySql(&'r MySqlRow),
}

impl<'r> From<&'r SqliteRow> for RowRef<'r> {
    fn from(row: &'r SqliteRow) -> Self {
        RowRef::Sqlite(row)
    }
}
impl<'r> From<&'r PgRow> for RowRef<'r> {
    fn from(row: &'r PgRow) -> Self {
        RowRef::Postgres(row)
    }
}
impl<'r> From<&'r MySqlRow> for RowRef<'r> {
    fn from(row: &'r MySqlRow) -> Self {
        RowRef::MySql(row)
    }
}

impl RowRef<'_> {
    /// Reads column `index` as a `V`. A NULL read into a `V` that is not an `Option` is
    /// [`Error::Decode`] on every backend.
    pub fn get<V: Value>(self, index: usize) -> Result<V> {
        V::decode(self, index).map_err(|source| Error::Decode {
            table: None,
            column: self.column_name(index),
            source,
        })
    }

    /// [`get`](Self::get) for a row of a model's `table`, which errors name.
    pub(crate) fn get_in<V: Value>(self, table: &'static str, index: usize) -> Result<V> {
        V::decode(self, index).map_err(|source| Error::Decode {
            table: Some(table),
            column: self.column_name(index),
            source,
        })
    }

    /// Whether column `index` holds NULL.
    pub fn is_null(self, index: usize) -> Result<bool, sqlx::Error> {
        Ok(match self {
            RowRef::Sqlite(row) => row.try_get_raw(index)?.is_null(),
            RowRef::Postgres(row) => row.try_get_raw(index)?.is_null(),
            RowRef::MySql(row) => row.try_get_raw(index)?.is_null(),
        })
    }

    fn column_name(self, index: usize) -> String {
        use sqlx::Column as _;
        let name = match self {
            RowRef::Sqlite(row) => row.columns().get(index).map(|c| c.name().to_owned()),
            RowRef::Postgres(row) => row.columns().get(index).map(|c| c.name().to_owned()),
            RowRef::MySql(row) => row.columns().get(index).map(|c| c.name().to_owned()),
        };
        name.unwrap_or_else(|| format!("#{index}"))
    }
}

/// A Rust type that can be stored in a column on every backend.
///
/// Implemented for `i16`, `i32`, `i64`, `f32`, `f64`, `bool`, `String`, `Vec<u8>`,
/// [`rust_decimal::Decimal`], [`chrono::DateTime<Utc>`](chrono::DateTime),
/// [`chrono::NaiveDateTime`], [`chrono::NaiveDate`], [`uuid::Uuid`], [`Json<T>`] and `Option<V>`
/// of any of them (NULL is `None`).
///
/// Column types to declare: see the guide's type table (`docs/types.md`). Implement this trait for
/// a type of your own by delegating to one of these.
///
/// ```
/// use activerecord::{Arguments, Backend, Value};
///
/// let mut args = Arguments::new(Backend::Sqlite);
/// Some(rust_decimal::Decimal::new(1999, 2)).bind(&mut args).unwrap();
/// None::<String>.bind(&mut args).unwrap();
/// assert_eq!(args.len(), 2);
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be stored in a model column",
    label = "unsupported field type",
    note = "supported: i16, i32, i64, f32, f64, bool, String, Vec<u8>, rust_decimal::Decimal, chrono::DateTime<Utc>, chrono::NaiveDateTime, chrono::NaiveDate, uuid::Uuid, activerecord::Json<T>, and Option of any of them",
    note = "a field that is not stored can be marked #[activerecord(skip)]"
)]
pub trait Value: Send + Sync + 'static {
    /// Appends `self` to `args`.
    fn bind(&self, args: &mut Arguments) -> Result<(), BoxDynError>;

    /// Appends a NULL typed as `Self` (PostgreSQL checks parameter types even for NULL).
    fn bind_null(args: &mut Arguments) -> Result<(), BoxDynError>
    where
        Self: Sized;

    /// Reads column `index` of `row`.
    fn decode(row: RowRef<'_>, index: usize) -> Result<Self, sqlx::Error>
    where
        Self: Sized;

    /// The PostgreSQL type of this value (`"int8"`, `"text"`, ...), written as a cast on its
    /// placeholder in query conditions.
    ///
    /// sqlx caches a prepared statement per connection by its SQL text alone, and PostgreSQL fixes
    /// a statement's parameter types when it is prepared: without the cast, the same condition
    /// given an `i32` and later an `i64` would reuse a statement prepared for the other type.
    /// A type of your own that returns `None` must always bind the same PostgreSQL type.
    fn postgres_type(&self) -> Option<&'static str> {
        None
    }

    /// The column types this type is stored in, for
    /// [`Model::check_schema`](crate::Model::check_schema). A type of your own that does not say
    /// is [`ColumnKind::Any`]: any column type passes the check (NOT NULL is still checked).
    fn column_type() -> ColumnType
    where
        Self: Sized,
    {
        ColumnType::not_null(ColumnKind::Any)
    }

    /// Converts a key generated by MySQL's `AUTO_INCREMENT` (reported as `LAST_INSERT_ID()`).
    /// `None` for types that cannot be such a key.
    fn from_generated_id(id: u64) -> Option<Self>
    where
        Self: Sized,
    {
        let _ = id;
        None
    }
}

/// Implements [`Value`] for types that sqlx encodes and decodes natively on all three backends,
/// with their PostgreSQL type; `[auto_increment]` marks the integer types a MySQL generated key
/// can be read into.
macro_rules! native_value {
    ($($ty:ty as $postgres:literal, $kind:ident $([$auto_increment:ident])?);* $(;)?) => {$(
        impl Value for $ty {
            fn postgres_type(&self) -> Option<&'static str> {
                Some($postgres)
            }
            fn column_type() -> ColumnType {
                ColumnType::not_null(ColumnKind::$kind)
            }
            fn bind(&self, args: &mut Arguments) -> Result<(), BoxDynError> {
                match args {
                    Arguments::Sqlite(a) => a.add(self),
                    Arguments::Postgres(a) => a.add(self),
                    Arguments::MySql(a) => a.add(self),
                }
            }
            fn bind_null(args: &mut Arguments) -> Result<(), BoxDynError> {
                match args {
                    Arguments::Sqlite(a) => a.add(None::<$ty>),
                    Arguments::Postgres(a) => a.add(None::<$ty>),
                    Arguments::MySql(a) => a.add(None::<$ty>),
                }
            }
            fn decode(row: RowRef<'_>, index: usize) -> Result<Self, sqlx::Error> {
                decode_native(row, index)
            }
            $(
                /// Integer keys can be `AUTO_INCREMENT` keys.
                fn from_generated_id(id: u64) -> Option<Self> {
                    let _ = stringify!($auto_increment);
                    <$ty>::try_from(id).ok()
                }
            )?
        }
    )*};
}

native_value!(
    i16 as "int2", SmallInt [auto_increment];
    i32 as "int4", Int [auto_increment];
    i64 as "int8", BigInt [auto_increment];
    f32 as "float4", Float;
    f64 as "float8", Double;
    bool as "bool", Bool;
    String as "text", Text;
    Vec<u8> as "bytea", Bytes;
    uuid::Uuid as "uuid", Uuid;
);

/// Reads a type sqlx decodes natively on every backend, refusing NULL on SQLite too.
fn decode_native<T>(row: RowRef<'_>, index: usize) -> Result<T, sqlx::Error>
where
    T: for<'r> sqlx::Decode<'r, sqlx::Sqlite>
        + sqlx::Type<sqlx::Sqlite>
        + for<'r> sqlx::Decode<'r, sqlx::Postgres>
        + sqlx::Type<sqlx::Postgres>
        + for<'r> sqlx::Decode<'r, sqlx::MySql>
        + sqlx::Type<sqlx::MySql>,
{
    match row {
        RowRef::Sqlite(r) => {
            sqlite_not_null(r, index)?;
            r.try_get::<T, _>(index)
        }
        RowRef::Postgres(r) => r.try_get::<T, _>(index),
        RowRef::MySql(r) => r.try_get::<T, _>(index),
    }
}

/// SQLite's decoders read a NULL as 0, "" or false: refuse it as PostgreSQL and MySQL do.
fn sqlite_not_null(row: &SqliteRow, index: usize) -> Result<(), sqlx::Error> {
    if row.try_get_raw(index)?.is_null() {
        Err(column_decode(index, sqlx::error::UnexpectedNullError))
    } else {
        Ok(())
    }
}

/// A value outside the range a backend stores, found before it was sent. [`Value::bind`]
/// returns it (boxed), and [`Arguments::add`] turns it into [`Error::ValueOutOfRange`]; a
/// [`Value`] of your own may return it too.
///
/// The ranges of the date and time types:
/// - MySQL/MariaDB: years 1000 to 9999, the documented supported range of `DATETIME` and `DATE`
///   (MariaDB stores year 10000 as NULL without an error; earlier years are not guaranteed).
/// - PostgreSQL: from 4714-11-24 BC (year -4713 in chrono's numbering); every later date chrono
///   can hold (to year 262142) fits.
/// - SQLite: years 0000 to 9999. Dates are stored as text, which sorts and compares correctly,
///   and which SQLite's date functions read, only with four-digit years.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutOfRange {
    /// The value, as written by `Display`.
    pub value: String,
    /// The backend it was to be sent to.
    pub backend: Backend,
    /// The range that backend stores.
    pub range: &'static str,
}

impl std::fmt::Display for OutOfRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} is outside what {} stores ({})",
            self.value, self.backend, self.range
        )
    }
}

impl std::error::Error for OutOfRange {}

/// Refuses a date (or the date of a timestamp) outside what `backend` stores.
fn check_date_range(backend: Backend, date: NaiveDate, value: &dyn std::fmt::Display) -> Result<(), BoxDynError> {
    let (fits, range) = backend.dialect().date_fits(date);
    if fits {
        Ok(())
    } else {
        Err(Box::new(OutOfRange {
            value: value.to_string(),
            backend,
            range,
        }))
    }
}

/// Dates and timestamps: range-checked before they are sent (see [`OutOfRange`]). MySQL gets a
/// `DateTime<Utc>` as its UTC `DATETIME` value: sent as a `TIMESTAMP`, MariaDB stores a value
/// outside 1970-2038 as NULL.
macro_rules! date_value {
    ($($ty:ty as $postgres:literal, $kind:ident, |$v:ident| $date:expr, |$m:ident| $mysql:expr, $mysql_ty:ty);* $(;)?) => {$(
        impl Value for $ty {
            fn postgres_type(&self) -> Option<&'static str> {
                Some($postgres)
            }
            fn column_type() -> ColumnType {
                ColumnType::not_null(ColumnKind::$kind)
            }
            fn bind(&self, args: &mut Arguments) -> Result<(), BoxDynError> {
                let $v = self;
                check_date_range(args.backend(), $date, self)?;
                match args {
                    Arguments::Sqlite(a) => a.add(self),
                    Arguments::Postgres(a) => a.add(self),
                    Arguments::MySql(a) => {
                        let $m = self;
                        a.add($mysql)
                    }
                }
            }
            fn bind_null(args: &mut Arguments) -> Result<(), BoxDynError> {
                match args {
                    Arguments::Sqlite(a) => a.add(None::<$ty>),
                    Arguments::Postgres(a) => a.add(None::<$ty>),
                    Arguments::MySql(a) => a.add(None::<$mysql_ty>),
                }
            }
            fn decode(row: RowRef<'_>, index: usize) -> Result<Self, sqlx::Error> {
                decode_native(row, index)
            }
        }
    )*};
}

date_value!(
    DateTime<Utc> as "timestamptz", TimestampTz, |v| v.date_naive(), |m| m.naive_utc(), NaiveDateTime;
    NaiveDateTime as "timestamp", Timestamp, |v| v.date(), |m| *m, NaiveDateTime;
    NaiveDate as "date", Date, |v| *v, |m| *m, NaiveDate;
);

impl<T> Value for Json<T>
where
    T: serde::Serialize + serde::de::DeserializeOwned + Send + Sync + 'static,
{
    fn postgres_type(&self) -> Option<&'static str> {
        Some("jsonb")
    }
    fn column_type() -> ColumnType {
        ColumnType::not_null(ColumnKind::Json)
    }
    fn bind(&self, args: &mut Arguments) -> Result<(), BoxDynError> {
        match args {
            Arguments::Sqlite(a) => a.add(self),
            Arguments::Postgres(a) => a.add(self),
            Arguments::MySql(a) => a.add(self),
        }
    }
    fn bind_null(args: &mut Arguments) -> Result<(), BoxDynError> {
        match args {
            Arguments::Sqlite(a) => a.add(None::<Json<T>>),
            Arguments::Postgres(a) => a.add(None::<Json<T>>),
            Arguments::MySql(a) => a.add(None::<Json<T>>),
        }
    }
    fn decode(row: RowRef<'_>, index: usize) -> Result<Self, sqlx::Error> {
        match row {
            RowRef::Sqlite(r) => {
                sqlite_not_null(r, index)?;
                r.try_get::<Json<T>, _>(index)
            }
            RowRef::Postgres(r) => r.try_get::<Json<T>, _>(index),
            // MariaDB's JSON is LONGTEXT underneath and reports itself as text.
            RowRef::MySql(r) => {
                let text: String = r.try_get(index)?;
                serde_json::from_str(&text)
                    .map(Json)
                    .map_err(|e| column_decode(index, e))
            }
        }
    }
}

/// SQLite has no decimal type: decimals are stored there as their exact text.
impl Value for rust_decimal::Decimal {
    fn postgres_type(&self) -> Option<&'static str> {
        Some("numeric")
    }
    fn column_type() -> ColumnType {
        ColumnType::not_null(ColumnKind::Decimal)
    }
    fn bind(&self, args: &mut Arguments) -> Result<(), BoxDynError> {
        match args {
            Arguments::Sqlite(a) => a.add(self.to_string()),
            Arguments::Postgres(a) => a.add(self),
            Arguments::MySql(a) => a.add(self),
        }
    }
    fn bind_null(args: &mut Arguments) -> Result<(), BoxDynError> {
        match args {
            Arguments::Sqlite(a) => a.add(None::<String>),
            Arguments::Postgres(a) => a.add(None::<rust_decimal::Decimal>),
            Arguments::MySql(a) => a.add(None::<rust_decimal::Decimal>),
        }
    }
    fn decode(row: RowRef<'_>, index: usize) -> Result<Self, sqlx::Error> {
        match row {
            RowRef::Sqlite(r) => {
                sqlite_not_null(r, index)?;
                let text: String = r.try_get(index)?;
                text.parse().map_err(|e| column_decode(index, e))
            }
            RowRef::Postgres(r) => r.try_get(index),
            RowRef::MySql(r) => r.try_get(index),
        }
    }
}

impl<V: Value + Sized> Value for Option<V> {
    /// `None` has no value to ask: a NULL parameter is left uncast (compare with NULL through
    /// `is_null`).
    fn postgres_type(&self) -> Option<&'static str> {
        self.as_ref().and_then(Value::postgres_type)
    }
    fn bind(&self, args: &mut Arguments) -> Result<(), BoxDynError> {
        match self {
            Some(value) => value.bind(args),
            None => V::bind_null(args),
        }
    }
    fn bind_null(args: &mut Arguments) -> Result<(), BoxDynError> {
        V::bind_null(args)
    }
    fn column_type() -> ColumnType {
        ColumnType {
            nullable: true,
            ..V::column_type()
        }
    }
    fn decode(row: RowRef<'_>, index: usize) -> Result<Self, sqlx::Error> {
        if row.is_null(index)? {
            Ok(None)
        } else {
            V::decode(row, index).map(Some)
        }
    }
}

fn column_decode(index: usize, source: impl std::error::Error + Send + Sync + 'static) -> sqlx::Error {
    sqlx::Error::ColumnDecode {
        index: format!("{index}"),
        source: Box::new(source),
    }
}

/// A query parameter: any [`Value`], or a string slice (copied).
///
/// ```
/// use activerecord::col;
///
/// let by_owner = col("owner").eq("alice");
/// let owner = String::from("bob");
/// let also = col("owner").eq(owner.as_str());
/// let rich = col("balance").ge(1_000_i64);
/// # let _ = (by_owner, also, rich);
/// ```
pub trait IntoParam {
    /// Boxes the value for binding later.
    fn into_param(self) -> Box<dyn Value>;
}

impl<V: Value> IntoParam for V {
    fn into_param(self) -> Box<dyn Value> {
        Box::new(self)
    }
}

impl IntoParam for &str {
    fn into_param(self) -> Box<dyn Value> {
        Box::new(self.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_is_bound_as_text_on_sqlite() {
        let mut args = Arguments::new(Backend::Sqlite);
        rust_decimal::Decimal::new(12345, 2).bind(&mut args).unwrap();
        assert_eq!(args.len(), 1);
    }

    #[test]
    fn only_integers_take_generated_ids() {
        assert_eq!(i64::from_generated_id(7), Some(7));
        assert_eq!(i16::from_generated_id(70_000), None);
        assert_eq!(String::from_generated_id(7), None);
    }
}
