//! Queries: conditions built with [`col`], combined by [`Query::filter`], ordered, limited and run
//! with `all`, `first`, `count`, `exists` or `delete_all`.
//!
//! Guarantees: values (including `LIMIT` and `OFFSET`) are bound parameters; column names are
//! checked against the model and quoted; an unknown column is [`Error::UnknownColumn`].

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::executor::{Executor, Target};
use crate::model::Model;
use crate::sql::{push_ident, push_placeholder};
use crate::value::{Arguments, IntoParam, Value};
use std::borrow::Cow;
use std::fmt::{self, Write};
use std::marker::PhantomData;

/// Names a column, to build a [`Condition`].
///
/// ```
/// use activerecord::col;
///
/// let conditions = [
///     col("balance").gt(100),
///     col("owner").like("a%"),
///     col("id").is_in([1, 2, 3]),
///     col("closed_at").is_null(),
/// ];
/// # let _ = conditions;
/// ```
pub fn col(name: impl Into<Cow<'static, str>>) -> Column {
    Column(name.into())
}

/// A column named in a condition. See [`col`].
#[derive(Debug, Clone)]
pub struct Column(Cow<'static, str>);

/// One test on one column: `balance > 100`, `id IN (1, 2)`, `closed_at IS NULL`.
pub struct Condition {
    column: Cow<'static, str>,
    test: Test,
}

enum Test {
    Compare(&'static str, Box<dyn Value>),
    In { negated: bool, values: Vec<Box<dyn Value>> },
    Null { negated: bool },
}

impl fmt::Debug for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let test = match &self.test {
            Test::Compare(op, _) => format!("{op} ?"),
            Test::In { negated, values } => {
                format!("{}IN ({} values)", if *negated { "NOT " } else { "" }, values.len())
            }
            Test::Null { negated } => format!("IS {}NULL", if *negated { "NOT " } else { "" }),
        };
        write!(f, "Condition({} {test})", self.column)
    }
}

impl Column {
    fn compare(self, op: &'static str, value: impl IntoParam) -> Condition {
        Condition {
            column: self.0,
            test: Test::Compare(op, value.into_param()),
        }
    }

    /// `column = value`
    pub fn eq(self, value: impl IntoParam) -> Condition {
        self.compare("=", value)
    }
    /// `column <> value`
    pub fn ne(self, value: impl IntoParam) -> Condition {
        self.compare("<>", value)
    }
    /// `column < value`
    pub fn lt(self, value: impl IntoParam) -> Condition {
        self.compare("<", value)
    }
    /// `column <= value`
    pub fn le(self, value: impl IntoParam) -> Condition {
        self.compare("<=", value)
    }
    /// `column > value`
    pub fn gt(self, value: impl IntoParam) -> Condition {
        self.compare(">", value)
    }
    /// `column >= value`
    pub fn ge(self, value: impl IntoParam) -> Condition {
        self.compare(">=", value)
    }
    /// `column LIKE pattern`. Case sensitivity is the backend's: SQLite ignores ASCII case,
    /// PostgreSQL does not, MySQL follows the column's collation.
    pub fn like(self, pattern: impl IntoParam) -> Condition {
        self.compare("LIKE", pattern)
    }
    /// `column IN (values...)`; an empty list matches nothing.
    pub fn is_in<P: IntoParam>(self, values: impl IntoIterator<Item = P>) -> Condition {
        let values = values.into_iter().map(IntoParam::into_param).collect();
        Condition {
            column: self.0,
            test: Test::In { negated: false, values },
        }
    }
    /// `column NOT IN (values...)`; an empty list matches everything.
    pub fn not_in<P: IntoParam>(self, values: impl IntoIterator<Item = P>) -> Condition {
        let values = values.into_iter().map(IntoParam::into_param).collect();
        Condition {
            column: self.0,
            test: Test::In { negated: true, values },
        }
    }
    /// `column IS NULL`
    pub fn is_null(self) -> Condition {
        Condition {
            column: self.0,
            test: Test::Null { negated: false },
        }
    }
    /// `column IS NOT NULL`
    pub fn is_not_null(self) -> Condition {
        Condition {
            column: self.0,
            test: Test::Null { negated: true },
        }
    }
}

/// Binds `value` and appends its placeholder; on PostgreSQL with a cast to the value's type (see
/// [`Value::postgres_type`]), so that statements differing in parameter types differ in text.
fn push_param(sql: &mut String, args: &mut Arguments, backend: Backend, value: &dyn Value) -> Result<()> {
    args.add(value)?;
    push_placeholder(sql, backend, args.len());
    backend.dialect().push_parameter_cast(sql, value.postgres_type());
    Ok(())
}

/// Sort direction for [`Query::order_by`].
///
/// ```
/// use activerecord::{ActiveRecord, Model, Order};
///
/// #[derive(ActiveRecord)]
/// struct Account { id: Option<i64>, balance: i64 }
///
/// let richest_first = Account::query().order_by("balance", Order::Desc).order_by("id", Order::Asc);
/// # let _ = richest_first;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Smallest first.
    Asc,
    /// Largest first.
    Desc,
}

/// A query on the table of model `M`, built with [`Model::query`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> activerecord::Result<()> {
/// use activerecord::{col, ActiveRecord, ConnectionManager, Model, Order};
///
/// #[derive(ActiveRecord, Debug)]
/// struct Account { id: Option<i64>, owner: String, balance: i64 }
///
/// let db = ConnectionManager::configure("query_doc", "sqlite::memory:").await?;
/// db.execute("CREATE TABLE accounts (id INTEGER PRIMARY KEY, owner TEXT, balance INTEGER)").await?;
/// for (owner, balance) in [("ann", 5), ("bob", 50), ("cy", 500)] {
///     Account::create(&db, Account { id: None, owner: owner.into(), balance }).await?;
/// }
///
/// let top = Account::query()
///     .filter(col("balance").ge(10))
///     .order_by("balance", Order::Desc)
///     .limit(1)
///     .first(&db)
///     .await?;
/// assert_eq!(top.unwrap().owner, "cy");
/// assert_eq!(Account::query().filter(col("owner").like("%y")).count(&db).await?, 1);
/// # Ok(()) }
/// ```
#[must_use = "a query does nothing until it is run with `all`, `first`, `count`, `exists` or `delete_all`"]
pub struct Query<M> {
    for_update: bool,
    /// Set by [`Query::unfiltered`]: a bulk write without conditions is meant.
    unfiltered: bool,
    conditions: Vec<Condition>,
    order: Vec<(Cow<'static, str>, Order)>,
    limit: Option<u64>,
    offset: Option<u64>,
    model: PhantomData<fn() -> M>,
}

impl<M> fmt::Debug for Query<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Query")
            .field("conditions", &self.conditions)
            .field("order", &self.order)
            .field("limit", &self.limit)
            .field("offset", &self.offset)
            .field("for_update", &self.for_update)
            .field("unfiltered", &self.unfiltered)
            .finish()
    }
}

/// What a rendered query selects.
enum Projection {
    Columns,
    Count,
    One,
}

impl<M: Model> Query<M> {
    pub(crate) fn new() -> Self {
        Query {
            for_update: false,
            unfiltered: false,
            conditions: Vec::new(),
            order: Vec::new(),
            limit: None,
            offset: None,
            model: PhantomData,
        }
    }

    /// Keeps only the records that meet `condition` as well as every earlier one (`AND`).
    pub fn filter(mut self, condition: Condition) -> Self {
        self.conditions.push(condition);
        self
    }

    /// Sorts by `column`; later calls break ties of earlier ones.
    pub fn order_by(mut self, column: impl Into<Cow<'static, str>>, order: Order) -> Self {
        self.order.push((column.into(), order));
        self
    }

    /// Locks the selected rows until the end of the transaction (`SELECT ... FOR UPDATE`), so
    /// that a read-modify-write inside a scope cannot lose a concurrent update. On SQLite, whose
    /// write scopes hold the database's write lock from their start, this needs no SQL.
    pub fn for_update(mut self) -> Self {
        self.for_update = true;
        self
    }

    /// Declares that this query means every row of the table, so that a bulk write without any
    /// [`filter`](Self::filter) is allowed: without it, [`delete_all`](Self::delete_all) on a
    /// query with no condition is refused with [`Error::Unfiltered`] (a forgotten filter must not
    /// empty a table). Reads never need it.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> activerecord::Result<()> {
    /// use activerecord::{ActiveRecord, ConnectionManager, Error, Model};
    ///
    /// #[derive(ActiveRecord, Debug)]
    /// struct Session { id: Option<i64>, user: String }
    ///
    /// let db = ConnectionManager::configure("unfiltered_doc", "sqlite::memory:").await?;
    /// db.execute("CREATE TABLE sessions (id INTEGER PRIMARY KEY, user TEXT NOT NULL)").await?;
    /// Session::create(&db, Session { id: None, user: "ann".into() }).await?;
    ///
    /// let refused = Session::query().delete_all(&db).await;
    /// assert!(matches!(refused, Err(Error::Unfiltered { .. })));
    /// assert_eq!(Session::count(&db).await?, 1, "nothing was deleted");
    ///
    /// assert_eq!(Session::query().unfiltered().delete_all(&db).await?, 1);
    /// # Ok(()) }
    /// ```
    pub fn unfiltered(mut self) -> Self {
        self.unfiltered = true;
        self
    }

    /// Returns at most `n` records.
    pub fn limit(mut self, n: u64) -> Self {
        self.limit = Some(n);
        self
    }

    /// Skips the first `n` records.
    pub fn offset(mut self, n: u64) -> Self {
        self.offset = Some(n);
        self
    }

    /// Every matching record.
    pub async fn all<C: Executor + ?Sized>(self, conn: &C) -> Result<Vec<M>> {
        let target = conn.target(M::META.database)?;
        let (sql, args) = self.render(&target, Projection::Columns)?;
        target.fetch_all(sqlx::AssertSqlSafe(sql), args, M::from_row).await
    }

    /// The first matching record (in key order unless the query is ordered), if any.
    pub async fn first<C: Executor + ?Sized>(mut self, conn: &C) -> Result<Option<M>> {
        if self.order.is_empty() {
            self.order.push((M::META.key_column().into(), Order::Asc));
        }
        self.limit = Some(1);
        let target = conn.target(M::META.database)?;
        let (sql, args) = self.render(&target, Projection::Columns)?;
        target.fetch_optional(sqlx::AssertSqlSafe(sql), args, M::from_row).await
    }

    /// How many records match (after `limit` and `offset`, if set).
    pub async fn count<C: Executor + ?Sized>(self, conn: &C) -> Result<i64> {
        let target = conn.target(M::META.database)?;
        let (sql, args) = self.render(&target, Projection::Count)?;
        let count = target
            .fetch_optional(sqlx::AssertSqlSafe(sql), args, |row| row.get::<i64>(0))
            .await?;
        Ok(count.unwrap_or(0))
    }

    /// Whether any record matches.
    pub async fn exists<C: Executor + ?Sized>(mut self, conn: &C) -> Result<bool> {
        self.limit = Some(1);
        let target = conn.target(M::META.database)?;
        let (sql, args) = self.render(&target, Projection::One)?;
        Ok(target
            .fetch_optional(sqlx::AssertSqlSafe(sql), args, |_| Ok(()))
            .await?
            .is_some())
    }

    /// Deletes every matching record (ignoring order, limit and offset); returns how many.
    ///
    /// A query with no [`filter`](Self::filter) is refused with [`Error::Unfiltered`] unless it
    /// is marked [`unfiltered`](Self::unfiltered).
    pub async fn delete_all<C: Executor + ?Sized>(self, conn: &C) -> Result<u64> {
        self.check_bulk_write("delete")?;
        let target = conn.target(M::META.database)?;
        let backend = target.backend();
        let mut sql = String::from("DELETE FROM ");
        push_ident(&mut sql, backend, M::META.table);
        let mut args = target.arguments();
        self.push_where(&mut sql, &mut args, backend)?;
        Ok(target.execute(sqlx::AssertSqlSafe(sql), args).await?.rows_affected)
    }

    /// Refuses a bulk write that would touch every row without saying so.
    fn check_bulk_write(&self, operation: &'static str) -> Result<()> {
        if self.conditions.is_empty() && !self.unfiltered {
            return Err(Error::Unfiltered {
                table: M::META.table,
                operation,
            });
        }
        Ok(())
    }

    fn check_column(column: &str) -> Result<()> {
        if M::META.has_column(column) {
            Ok(())
        } else {
            Err(Error::UnknownColumn {
                table: M::META.table,
                column: column.to_owned(),
                columns: M::META.columns,
            })
        }
    }

    fn render(&self, target: &Target<'_>, projection: Projection) -> Result<(String, Arguments)> {
        let backend = target.backend();
        let mut args = target.arguments();
        let statements = M::statements(backend);
        let paged = self.limit.is_some() || self.offset.is_some();
        let mut sql = match (&projection, paged) {
            (Projection::Columns, _) => statements.select.clone(),
            (Projection::Count, false) => String::from("SELECT COUNT(*) FROM "),
            (Projection::One, _) | (Projection::Count, true) => String::from("SELECT 1 FROM "),
        };
        if !matches!(projection, Projection::Columns) {
            push_ident(&mut sql, backend, M::META.table);
        }
        self.push_where(&mut sql, &mut args, backend)?;
        if !matches!(projection, Projection::Count) || paged {
            self.push_order_and_page(&mut sql, &mut args, backend)?;
        }
        if matches!(projection, Projection::Count) && paged {
            sql = format!("SELECT COUNT(*) FROM ({sql}) AS counted");
        }
        if self.for_update && matches!(projection, Projection::Columns) {
            sql.push_str(backend.dialect().for_update());
        }
        Ok((sql, args))
    }

    fn push_where(&self, sql: &mut String, args: &mut Arguments, backend: Backend) -> Result<()> {
        for (i, condition) in self.conditions.iter().enumerate() {
            Self::check_column(&condition.column)?;
            sql.push_str(if i == 0 { " WHERE " } else { " AND " });
            match &condition.test {
                Test::Compare(op, value) => {
                    push_ident(sql, backend, &condition.column);
                    let _ = write!(sql, " {op} ");
                    push_param(sql, args, backend, value.as_ref())?;
                }
                Test::In { negated, values } if values.is_empty() => {
                    // `IN ()` is not valid SQL; an empty list is simply never (or always) met.
                    sql.push_str(if *negated { "1 = 1" } else { "1 = 0" });
                }
                Test::In { negated, values } => {
                    push_ident(sql, backend, &condition.column);
                    sql.push_str(if *negated { " NOT IN (" } else { " IN (" });
                    for (j, value) in values.iter().enumerate() {
                        if j > 0 {
                            sql.push_str(", ");
                        }
                        push_param(sql, args, backend, value.as_ref())?;
                    }
                    sql.push(')');
                }
                Test::Null { negated } => {
                    push_ident(sql, backend, &condition.column);
                    sql.push_str(if *negated { " IS NOT NULL" } else { " IS NULL" });
                }
            }
        }
        Ok(())
    }

    fn push_order_and_page(&self, sql: &mut String, args: &mut Arguments, backend: Backend) -> Result<()> {
        for (i, (column, order)) in self.order.iter().enumerate() {
            Self::check_column(column)?;
            sql.push_str(if i == 0 { " ORDER BY " } else { ", " });
            push_ident(sql, backend, column);
            sql.push_str(match order {
                Order::Asc => " ASC",
                Order::Desc => " DESC",
            });
        }
        let limit = match (self.limit, self.offset) {
            (Some(limit), _) => Some(i64::try_from(limit).unwrap_or(i64::MAX)),
            // SQLite and MySQL accept OFFSET only after a LIMIT: use their "no limit".
            (None, Some(_)) => backend.dialect().no_limit(),
            (None, None) => None,
        };
        if let Some(limit) = limit {
            args.add(&limit)?;
            sql.push_str(" LIMIT ");
            push_placeholder(sql, backend, args.len());
        }
        if let Some(offset) = self.offset {
            args.add(&i64::try_from(offset).unwrap_or(i64::MAX))?;
            sql.push_str(" OFFSET ");
            push_placeholder(sql, backend, args.len());
        }
        Ok(())
    }
}
