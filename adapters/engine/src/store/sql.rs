//! What the store asks of a database: statements with parameters in, rows of values out.
//!
//! Both backends run the same statements, written once in SQLite's dialect (`postgres.rs`
//! translates the few spellings that differ), so what the engine writes and reads, and the rules
//! that keep concurrent engines from moving an instance backwards, are decided in one place.

use crate::error::Error;

/// A statement parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Value<'a> {
    /// SQL `NULL`.
    Null,
    /// An integer (every integer column is 64-bit; flags are 0 or 1).
    Int(i64),
    /// Text.
    Text(&'a str),
}

impl<'a> Value<'a> {
    /// `Some` as its value, `None` as `NULL`.
    pub(super) fn opt_text(text: Option<&'a str>) -> Self {
        text.map_or(Self::Null, Self::Text)
    }

    /// `Some` as its value, `None` as `NULL`.
    pub(super) fn opt_int(int: Option<i64>) -> Self {
        int.map_or(Self::Null, Self::Int)
    }

    /// An unsigned count, saturating at `i64::MAX`.
    pub(super) fn count(n: u64) -> Self {
        Self::Int(i64::try_from(n).unwrap_or(i64::MAX))
    }
}

/// One value of a row read back.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Cell {
    /// SQL `NULL`.
    Null,
    /// An integer.
    Int(i64),
    /// Text.
    Text(String),
    /// A value of a type the store never writes (a real, a blob), named.
    Other(&'static str),
}

/// A row read back, column by column in the order the query selects them.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Row(pub(super) Vec<Cell>);

/// Why a row could not be read: a column missing or of the wrong type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct CellError {
    column: usize,
    expected: &'static str,
}

impl std::fmt::Display for CellError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "column {} is not {}", self.column, self.expected)
    }
}

impl Row {
    fn cell(&self, column: usize) -> &Cell {
        self.0.get(column).unwrap_or(&Cell::Other("missing"))
    }

    /// Column `column` as text.
    pub(super) fn text(&self, column: usize) -> Result<String, CellError> {
        self.opt_text(column)?.ok_or(CellError { column, expected: "text" })
    }

    /// Column `column` as text, or `None` for `NULL`.
    pub(super) fn opt_text(&self, column: usize) -> Result<Option<String>, CellError> {
        match self.cell(column) {
            Cell::Null => Ok(None),
            Cell::Text(t) => Ok(Some(t.clone())),
            _ => Err(CellError { column, expected: "text" }),
        }
    }

    /// Column `column` as an integer.
    pub(super) fn int(&self, column: usize) -> Result<i64, CellError> {
        self.opt_int(column)?.ok_or(CellError { column, expected: "an integer" })
    }

    /// Column `column` as an integer, or `None` for `NULL`.
    pub(super) fn opt_int(&self, column: usize) -> Result<Option<i64>, CellError> {
        match self.cell(column) {
            Cell::Null => Ok(None),
            Cell::Int(n) => Ok(Some(*n)),
            _ => Err(CellError { column, expected: "an integer" }),
        }
    }

    /// Column `column` as an integer that fits `T`, or `None` for `NULL`.
    pub(super) fn opt_int_as<T: TryFrom<i64>>(&self, column: usize) -> Result<Option<T>, CellError> {
        self.opt_int(column)?
            .map(|n| T::try_from(n).map_err(|_| CellError { column, expected: "an integer in range" }))
            .transpose()
    }

    /// Column `column` as an integer that fits `T`.
    pub(super) fn int_as<T: TryFrom<i64>>(&self, column: usize) -> Result<T, CellError> {
        self.opt_int_as(column)?.ok_or(CellError { column, expected: "an integer" })
    }
}

/// A connection to one of the backends.
pub(super) trait Conn: Send {
    /// Runs a statement; returns how many rows it changed.
    fn execute(&mut self, sql: &'static str, params: &[Value<'_>]) -> Result<u64, Error>;
    /// Runs a statement once per parameter list, in order (PostgreSQL sends them all before
    /// waiting for the answers); returns how many rows each changed.
    fn execute_each(&mut self, sql: &'static str, each: &[&[Value<'_>]]) -> Result<Vec<u64>, Error>;
    /// Runs a query; returns its rows.
    fn query(&mut self, sql: &'static str, params: &[Value<'_>]) -> Result<Vec<Row>, Error>;
    /// Runs statements without parameters or results (`BEGIN`, `COMMIT`, `ROLLBACK`).
    fn batch(&mut self, sql: &str) -> Result<(), Error>;
    /// How many migrations the database has had.
    fn schema_version(&mut self) -> Result<usize, Error>;
}

/// Runs `body` in a transaction: committed if it succeeds, rolled back if it or the commit fails.
pub(super) fn transaction<T>(
    conn: &mut dyn Conn,
    body: impl FnOnce(&mut dyn Conn) -> Result<T, Error>,
) -> Result<T, Error> {
    conn.batch("BEGIN")?;
    let done = body(conn).and_then(|value| conn.batch("COMMIT").map(|()| value));
    if done.is_err() {
        // A failed COMMIT (a busy SQLite file) leaves the transaction open: end it.
        let _ = conn.batch("ROLLBACK");
    }
    done
}

/// The rows `read` makes sense of. A row it cannot read (a value of the wrong type, written by
/// hand or by a broken tool) is skipped with a warning rather than refusing every other row with
/// it.
pub(super) fn readable<T>(rows: Vec<Row>, table: &str, read: impl Fn(&Row) -> Result<T, CellError>) -> Vec<T> {
    rows.iter()
        .filter_map(|row| read(row).map_err(|e| tracing::warn!(table, error = %e, "an unreadable row: skipped")).ok())
        .collect()
}
