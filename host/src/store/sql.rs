//! Raw SQL for the superusers' console (`POST /api/sql`), as PocketBase runs it: a query
//! that only reads runs on a reader and returns its last statement's columns and first 1000
//! rows (every value as text, as PocketBase's driver scans it); a query that writes runs as one
//! writer job, all or nothing, and returns the rows it changed.
//!
//! SQLite itself says whether a statement writes (`sqlite3_stmt_readonly`), instead of
//! PocketBase's guess from the first keyword. Reads run on a connection of their own, opened
//! for the query and closed after it, so what SQLite counts as reading but changes a
//! connection (`PRAGMA case_sensitive_like = 1`, `ATTACH`) never reaches the pool that serves
//! the API. Transaction control (`BEGIN`, `COMMIT`, ...) is refused: each query already runs
//! in a transaction of its own, and a `COMMIT` inside a writer job would end the writer's
//! batch. On a replicating node a write is refused: rows
//! written here would bypass the log, so this node would hold data no other node has and the
//! next fold of those rows would silently disagree. Maintenance statements that change no
//! content (`VACUUM`, `ANALYZE`, `REINDEX`, `PRAGMA optimize`, `PRAGMA wal_checkpoint`) still
//! run, between transactions.

use std::time::{Duration, Instant};

use rusqlite::fallible_iterator::FallibleIterator;
use rusqlite::types::ValueRef;
use rusqlite::{Batch, Connection};
use serde::Serialize;
use serde_json::Value;

use super::views::sqlite_text;
use super::{Store, StoreError};

/// Most rows returned (PocketBase's limit).
const MAX_ROWS: usize = 1000;
/// Longest a read may run before it is interrupted (PocketBase's limit).
const MAX_TIME: Duration = Duration::from_secs(180);

#[derive(Debug, Clone, Serialize)]
pub struct Column {
    pub name: String,
    #[serde(rename = "type")]
    pub decl_type: String,
    pub nullable: bool,
}

/// The answer, in PocketBase's shape.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SqlResult {
    pub exec_time: i64,
    pub affected_rows: i64,
    pub columns: Vec<Column>,
    pub rows: Vec<Vec<Value>>,
}

/// Why a query did not run.
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    /// SQLite refused or failed it (its message, as PocketBase's driver words it).
    #[error("{0}")]
    Failed(String),
    /// A write on a replicating node.
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<rusqlite::Error> for SqlError {
    fn from(e: rusqlite::Error) -> Self {
        SqlError::Failed(sqlite_text(&e))
    }
}

/// What a query does, as far as this node is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plan {
    Read,
    Write,
    /// Node-local upkeep that changes no content and runs outside a transaction.
    Maintenance,
}

/// A statement that only maintains the file: no rows change.
fn is_maintenance(query: &str) -> bool {
    let words: Vec<String> = query
        .trim()
        .trim_end_matches(';')
        .split_whitespace()
        .take(2)
        .map(str::to_ascii_uppercase)
        .collect();
    match words.first().map(String::as_str) {
        Some("VACUUM" | "ANALYZE" | "REINDEX") => !query.trim().trim_end_matches(';').contains(';'),
        Some("PRAGMA") => words
            .get(1)
            .is_some_and(|w| w.starts_with("OPTIMIZE") || w.starts_with("WAL_CHECKPOINT")),
        _ => false,
    }
}

/// Whether a statement begins, ends or names a transaction.
fn is_transaction_control(sql: &str) -> bool {
    let first = sql
        .trim_start()
        .split(|c: char| !c.is_ascii_alphabetic())
        .next()
        .unwrap_or_default()
        .to_ascii_uppercase();
    matches!(
        first.as_str(),
        "BEGIN" | "COMMIT" | "END" | "ROLLBACK" | "SAVEPOINT" | "RELEASE"
    )
}

fn no_transactions() -> SqlError {
    SqlError::Failed(
        "transaction statements are not allowed: each query runs in a transaction of its own"
            .into(),
    )
}

/// Prepares each statement without running it: the query writes as soon as one statement
/// does. A statement that cannot be prepared (a syntax error, a table made by an earlier
/// statement) after a write is left for the writer to judge.
fn classify(conn: &Connection, query: &str) -> Result<Plan, SqlError> {
    if is_maintenance(query) {
        return Ok(Plan::Maintenance);
    }
    let mut batch = Batch::new(conn, query);
    let mut plan = Plan::Read;
    loop {
        match batch.next() {
            Ok(Some(stmt)) => {
                if stmt
                    .expanded_sql()
                    .is_some_and(|s| is_transaction_control(&s))
                {
                    return Err(no_transactions());
                }
                if !stmt.readonly() {
                    plan = Plan::Write;
                }
            }
            Ok(None) => return Ok(plan),
            Err(_) if plan == Plan::Write => return Ok(plan),
            Err(e) => return Err(e.into()),
        }
    }
}

/// Text of a value as PocketBase's driver scans it into a string.
fn text_of(v: ValueRef<'_>) -> Value {
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::String(i.to_string()),
        ValueRef::Real(f) => Value::String(go_float(f)),
        ValueRef::Text(t) | ValueRef::Blob(t) => {
            Value::String(String::from_utf8_lossy(t).into_owned())
        }
    }
}

/// Go's `strconv.FormatFloat(f, 'g', -1, 64)`: the shortest round-tripping digits, in
/// exponent form (`1.234567e+06`) when the exponent is below -4 or at least 6.
fn go_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0" } else { "0" }.into();
    }
    // Rust's `{:e}` gives the same shortest digits: "-1.2345e-7".
    let e = format!("{f:e}");
    let (mantissa, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let sign = if f < 0.0 { "-" } else { "" };
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let mut out = String::from(sign);
    if !(-4..6).contains(&exp) {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push_str(&format!(
            "e{}{:02}",
            if exp < 0 { '-' } else { '+' },
            exp.abs()
        ));
        return out;
    }
    // Fixed notation: the decimal point after `exp + 1` digits.
    let (nd, dp) = (digits.len() as i32, exp + 1);
    if dp <= 0 {
        out.push_str("0.");
        out.push_str(&"0".repeat((-dp) as usize));
        out.push_str(&digits);
    } else if dp >= nd {
        out.push_str(&digits);
        out.push_str(&"0".repeat((dp - nd) as usize));
    } else {
        out.push_str(&digits[..dp as usize]);
        out.push('.');
        out.push_str(&digits[dp as usize..]);
    }
    out
}

/// Runs every statement of a read-only query; the last one's rows are the answer.
fn read(conn: &Connection, query: &str) -> Result<SqlResult, SqlError> {
    let started = Instant::now();
    let deadline = started + MAX_TIME;
    conn.progress_handler(10_000, Some(move || Instant::now() > deadline));
    let result = (|| {
        let mut out = SqlResult {
            exec_time: 0,
            affected_rows: 0,
            columns: Vec::new(),
            rows: Vec::new(),
        };
        let mut batch = Batch::new(conn, query);
        while let Some(mut stmt) = batch.next()? {
            out.columns = stmt
                .columns()
                .iter()
                .map(|c| Column {
                    name: c.name().to_string(),
                    decl_type: c.decl_type().unwrap_or_default().to_string(),
                    nullable: true,
                })
                .collect();
            out.rows.clear();
            let n = stmt.column_count();
            let mut rows = stmt.query([])?;
            while let Some(row) = rows.next()? {
                if out.rows.len() >= MAX_ROWS {
                    break;
                }
                let mut values = Vec::with_capacity(n);
                for i in 0..n {
                    values.push(text_of(row.get_ref(i)?));
                }
                out.rows.push(values);
            }
        }
        out.exec_time = started.elapsed().as_millis() as i64;
        Ok(out)
    })();
    conn.progress_handler(0, None::<fn() -> bool>);
    result
}

/// Runs every statement of a query that writes, on the writer connection (inside the job's
/// savepoint, or between transactions for maintenance).
fn write(conn: &Connection, query: &str) -> Result<SqlResult, SqlError> {
    let started = Instant::now();
    let deadline = started + MAX_TIME;
    conn.progress_handler(10_000, Some(move || Instant::now() > deadline));
    let run = || -> Result<i64, SqlError> {
        let mut batch = Batch::new(conn, query);
        let mut affected = 0;
        while let Some(mut stmt) = batch.next()? {
            // Checked again: statements after one that failed to prepare were not classified.
            if stmt
                .expanded_sql()
                .is_some_and(|s| is_transaction_control(&s))
            {
                return Err(no_transactions());
            }
            let mut rows = stmt.raw_query();
            while rows.next()?.is_some() {}
            affected = conn.changes() as i64;
        }
        Ok(affected)
    };
    let affected = run();
    conn.progress_handler(0, None::<fn() -> bool>);
    let affected = affected?;
    Ok(SqlResult {
        exec_time: started.elapsed().as_millis() as i64,
        affected_rows: affected,
        columns: Vec::new(),
        rows: Vec::new(),
    })
}

impl Store {
    /// Runs a superuser's raw SQL. `replicated`: this node replicates, so writes are refused.
    pub async fn run_sql(&self, query: String, replicated: bool) -> Result<SqlResult, SqlError> {
        let path = self.path().to_path_buf();
        let q = query.clone();
        // A read-only connection for this query alone (see the module docs).
        let (conn, plan) = tokio::task::spawn_blocking(move || {
            let conn = super::system::open_connection(&path, true)?;
            let plan = classify(&conn, &q);
            Ok::<_, SqlError>((conn, plan))
        })
        .await
        .map_err(|e| StoreError::Internal(e.to_string()))??;
        match plan? {
            Plan::Read => tokio::task::spawn_blocking(move || read(&conn, &query))
                .await
                .map_err(|e| SqlError::Store(StoreError::Internal(e.to_string())))?,
            Plan::Maintenance => Ok(self
                .writer()
                .outside(move |conn| Ok(write(conn, &query)))
                .await??),
            Plan::Write if replicated => Err(SqlError::Refused(
                "The SQL console is read-only on a replicating node: a write here would bypass the \
                 replication log and exist on this node only. Change data through the records and \
                 collections APIs, which every node applies in the same order."
                    .into(),
            )),
            Plan::Write => {
                // The job's savepoint makes the statements all or nothing: a failure must fail
                // the job, so it travels as a store error and is unwrapped here.
                self.write(move |ctx| {
                    write(ctx.conn, &query).map_err(|e| match e {
                        SqlError::Store(e) => e,
                        SqlError::Failed(m) | SqlError::Refused(m) => StoreError::BadRequest(m),
                    })
                })
                .await
                .map_err(|e| match e {
                    StoreError::BadRequest(m) => SqlError::Failed(m),
                    other => SqlError::Store(other),
                })
            }
        }
    }

    /// The node's periodic upkeep (`__pbDBOptimize__`): copy the WAL back and truncate it, and
    /// let SQLite refresh its planner statistics.
    pub async fn optimize(&self) -> Result<(), StoreError> {
        self.writer()
            .outside(|conn| {
                conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE); PRAGMA optimize;")?;
                Ok(())
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_as_go_prints_them() {
        for (f, want) in [
            (1.5, "1.5"),
            (3.0, "3"),
            (100.0, "100"),
            (123456.0, "123456"),
            (1234567.0, "1.234567e+06"),
            (1e6, "1e+06"),
            (1e21, "1e+21"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (-2.25, "-2.25"),
            (0.1, "0.1"),
            (123456.789, "123456.789"),
            (2.5e-5, "2.5e-05"),
            (12345678.5, "1.23456785e+07"),
            (-0.0, "-0"),
        ] {
            assert_eq!(go_float(f), want, "{f}");
        }
    }

    #[test]
    fn sqlite_decides_what_writes() {
        let c = Connection::open_in_memory().expect("open");
        c.execute_batch("CREATE TABLE t (a)").expect("setup");
        let plan = |q: &str| classify(&c, q).expect(q);
        assert_eq!(plan("select 1"), Plan::Read);
        assert_eq!(plan("WITH x AS (SELECT 1) SELECT * FROM x"), Plan::Read);
        assert_eq!(plan("PRAGMA table_info(t)"), Plan::Read);
        assert_eq!(plan("select 1; insert into t values (1)"), Plan::Write);
        assert_eq!(plan("  delete from t"), Plan::Write);
        assert_eq!(
            plan("create table u (b); insert into u values (1)"),
            Plan::Write
        );
        assert_eq!(plan("VACUUM"), Plan::Maintenance);
        assert_eq!(plan("pragma optimize"), Plan::Maintenance);
        assert_eq!(plan("VACUUM; DELETE FROM t"), Plan::Write);
        assert!(classify(&c, "select nope from t").is_err());
        // SQLite calls these read-only; they would end the writer's transaction or leave a
        // reader inside one.
        for q in [
            "BEGIN",
            "select 1; commit",
            "UPDATE t SET a = 1; COMMIT",
            "savepoint x",
        ] {
            assert!(matches!(classify(&c, q), Err(SqlError::Failed(_))), "{q}");
        }
    }
}
