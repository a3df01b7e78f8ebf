//! A prepared insert whose values are bound without copies, for the writer's per-row inserts.
//!
//! Why by hand: rusqlite binds every text and blob with `SQLITE_TRANSIENT` (SQLite copies
//! each value into an allocation of its own before building the row) and reaches each value
//! through a `ToSql` trait object. The exchange insert binds 34 columns per row: in a
//! callgrind profile of `mf import` on a lossy 20 MB capture, `bind_parameter` and what it
//! called were 18.6% of all instructions (7,800 per exchange). Here values are bound with
//! `SQLITE_STATIC`, which is sound because [`RawInsert::run`] borrows them for the whole
//! step and binds every parameter before any step: a pointer left bound by an earlier run is
//! never read (finalizing and resetting do not read bound values). The one exception is a
//! value that holds no borrowed pointer: a NULL, an integer or a `'static` text equal to what
//! the previous run bound is left bound (SQLite keeps bindings across a reset). Most of an
//! exchange row repeats its predecessor there (NULL trailers and errors, `GET`, `HTTP/1.1`,
//! status 200): rebinding them was 2,000 of the 10,000 instructions the row cost.

use std::ffi::{c_int, CStr};
use std::marker::PhantomData;
use std::ptr::NonNull;

use rusqlite::{ffi, Connection};

/// One value of a row, borrowed from the exchange being stored.
#[derive(Clone, Copy)]
pub(super) enum Val<'a> {
    Null,
    Int(i64),
    Text(&'a str),
    /// Text that lives for the whole program (a protocol name, `GET`): left bound when the
    /// previous run bound the same one.
    Static(&'static str),
    Blob(&'a [u8]),
}

/// What a parameter was last bound to, when that binding can be kept.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Bound {
    /// Unknown, or a borrowed value that must be bound again.
    Unknown,
    Null,
    Int(i64),
    Static(*const u8, usize),
}

impl<'a> Val<'a> {
    pub(super) fn opt_text(v: Option<&'a str>) -> Val<'a> {
        v.map_or(Val::Null, Val::Text)
    }

    pub(super) fn opt_blob(v: Option<&'a [u8]>) -> Val<'a> {
        v.map_or(Val::Null, Val::Blob)
    }

    pub(super) fn opt_int(v: Option<i64>) -> Val<'a> {
        v.map_or(Val::Null, Val::Int)
    }
}

/// A prepared `INSERT` on a connection, finalized when dropped.
pub(super) struct RawInsert<'c> {
    stmt: NonNull<ffi::sqlite3_stmt>,
    db: *mut ffi::sqlite3,
    params: usize,
    /// One per parameter: what is bound now.
    bound: Vec<Bound>,
    _conn: PhantomData<&'c Connection>,
}

impl<'c> RawInsert<'c> {
    /// Prepares `sql` on `conn` (kept for as long as the statement lives).
    pub(super) fn prepare(
        conn: &'c Connection,
        sql: &str,
    ) -> Result<RawInsert<'c>, rusqlite::Error> {
        // SAFETY: the handle is only used while `conn` is borrowed (the `'c` lifetime), on
        // this thread (a `Connection` is not `Sync`, and neither is this type).
        let db = unsafe { conn.handle() };
        let mut stmt = std::ptr::null_mut();
        let len = c_int::try_from(sql.len()).map_err(|_| misuse("statement too long"))?;
        // SAFETY: `sql` is valid for `len` bytes; `stmt` receives the prepared statement.
        let rc = unsafe {
            ffi::sqlite3_prepare_v3(
                db,
                sql.as_ptr().cast(),
                len,
                0,
                &mut stmt,
                std::ptr::null_mut(),
            )
        };
        if rc != ffi::SQLITE_OK {
            return Err(error_of(db, rc));
        }
        let stmt = NonNull::new(stmt).ok_or_else(|| misuse("empty statement"))?;
        // SAFETY: `stmt` was just prepared.
        let params = unsafe { ffi::sqlite3_bind_parameter_count(stmt.as_ptr()) };
        let params = usize::try_from(params).unwrap_or(0);
        Ok(RawInsert {
            stmt,
            db,
            params,
            bound: vec![Bound::Unknown; params],
            _conn: PhantomData,
        })
    }

    /// Binds `values` (one per parameter, in order) and runs the statement once.
    pub(super) fn run(&mut self, values: &[Val<'_>]) -> Result<(), rusqlite::Error> {
        if values.len() != self.params {
            return Err(rusqlite::Error::InvalidParameterCount(
                values.len(),
                self.params,
            ));
        }
        let stmt = self.stmt.as_ptr();
        let result = self.bind_all(values).and_then(|()| {
            // SAFETY: every parameter is bound to memory `values` keeps alive until return,
            // or kept from an earlier run with a value that borrows nothing (`Bound`).
            match unsafe { ffi::sqlite3_step(stmt) } {
                ffi::SQLITE_DONE | ffi::SQLITE_ROW => Ok(()),
                rc => Err(error_of(self.db, rc)),
            }
        });
        // SAFETY: resetting a valid statement. The step's error was read above, before the
        // reset. Not unbinding: clearing 34 bindings per row cost 500 instructions, and the
        // next run rebinds every parameter that borrows before it steps.
        unsafe {
            ffi::sqlite3_reset(stmt);
        }
        result
    }

    fn bind_all(&mut self, values: &[Val<'_>]) -> Result<(), rusqlite::Error> {
        let stmt = self.stmt.as_ptr();
        for (i, (v, bound)) in values.iter().zip(self.bound.iter_mut()).enumerate() {
            let now = match *v {
                Val::Null => Bound::Null,
                Val::Int(x) => Bound::Int(x),
                Val::Static(s) => Bound::Static(s.as_ptr(), s.len()),
                Val::Text(_) | Val::Blob(_) => Bound::Unknown,
            };
            if now != Bound::Unknown && now == *bound {
                continue;
            }
            let n = (i + 1) as c_int;
            // SAFETY: `stmt` is valid; text and blob pointers stay valid until `run` has
            // stepped and reset the statement (SQLITE_STATIC's contract), and a `'static`
            // text for ever.
            let rc = unsafe {
                match *v {
                    Val::Null => ffi::sqlite3_bind_null(stmt, n),
                    Val::Int(x) => ffi::sqlite3_bind_int64(stmt, n, x),
                    Val::Text(s) | Val::Static(s) => ffi::sqlite3_bind_text64(
                        stmt,
                        n,
                        s.as_ptr().cast(),
                        s.len() as ffi::sqlite3_uint64,
                        ffi::SQLITE_STATIC(),
                        ffi::SQLITE_UTF8 as _,
                    ),
                    // A zero-length blob with a pointer is an empty blob (a null pointer
                    // would bind NULL): a slice's pointer is never null.
                    Val::Blob(b) => ffi::sqlite3_bind_blob64(
                        stmt,
                        n,
                        b.as_ptr().cast(),
                        b.len() as ffi::sqlite3_uint64,
                        ffi::SQLITE_STATIC(),
                    ),
                }
            };
            if rc != ffi::SQLITE_OK {
                // What is bound now is not known: bind everything next time.
                self.bound.fill(Bound::Unknown);
                return Err(error_of(self.db, rc));
            }
            *bound = now;
        }
        Ok(())
    }
}

impl Drop for RawInsert<'_> {
    fn drop(&mut self) {
        // SAFETY: finalized once, while the connection (borrowed for `'c`) is still open.
        unsafe {
            ffi::sqlite3_finalize(self.stmt.as_ptr());
        }
    }
}

/// The error SQLite reports for `rc` on `db`, as rusqlite would report it.
fn error_of(db: *mut ffi::sqlite3, rc: c_int) -> rusqlite::Error {
    // SAFETY: `db` is an open connection; the message is copied before anything else runs.
    let (code, message) = unsafe {
        let code = ffi::sqlite3_extended_errcode(db);
        let msg = ffi::sqlite3_errmsg(db);
        let message = (!msg.is_null()).then(|| CStr::from_ptr(msg).to_string_lossy().into_owned());
        (code, message)
    };
    // The extended code names the cause (SQLITE_FULL, SQLITE_IOERR_*), which the writer's
    // storage-failure check reads; fall back to the step's own code when it says nothing.
    let code = if code == ffi::SQLITE_OK { rc } else { code };
    rusqlite::Error::SqliteFailure(ffi::Error::new(code), message)
}

fn misuse(what: &str) -> rusqlite::Error {
    rusqlite::Error::SqliteFailure(ffi::Error::new(ffi::SQLITE_MISUSE), Some(what.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const INSERT_FOUR: &str = "INSERT INTO t (a, b, c, d) VALUES (?1, ?2, ?3, ?4)";

    /// An in-memory table `t (a, b, c, d)`; `c` of type `c_type`.
    fn table_of_four(c_type: &str) -> Result<Connection, rusqlite::Error> {
        let conn = Connection::open_in_memory()?;
        conn.execute_batch(&format!(
            "CREATE TABLE t (a INTEGER PRIMARY KEY, b TEXT, c {c_type}, d)"
        ))?;
        Ok(conn)
    }

    /// Every row of `t`, in order of `a`.
    fn rows_of<A, B, C, D>(conn: &Connection) -> Result<Vec<(A, B, C, D)>, rusqlite::Error>
    where
        A: rusqlite::types::FromSql,
        B: rusqlite::types::FromSql,
        C: rusqlite::types::FromSql,
        D: rusqlite::types::FromSql,
    {
        conn.prepare("SELECT a, b, c, d FROM t ORDER BY a")?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
            .collect()
    }

    #[test]
    fn binds_every_kind_and_reports_constraint_errors() -> Result<(), rusqlite::Error> {
        let conn = table_of_four("BLOB")?;
        {
            let mut ins = RawInsert::prepare(&conn, INSERT_FOUR)?;
            let text = String::from("héllo");
            let blob = vec![0u8, 1, 2];
            ins.run(&[Val::Int(1), Val::Text(&text), Val::Blob(&blob), Val::Null])?;
            ins.run(&[
                Val::Int(2),
                Val::Text(""),
                Val::Blob(&[]),
                Val::opt_int(Some(7)),
            ])?;
            let dup = ins.run(&[Val::Int(1), Val::Null, Val::Null, Val::Null]);
            assert!(matches!(
                dup,
                Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == rusqlite::ErrorCode::ConstraintViolation
            ));
            assert!(matches!(
                ins.run(&[Val::Int(3)]),
                Err(rusqlite::Error::InvalidParameterCount(1, 4))
            ));
            // The statement still works after an error.
            ins.run(&[
                Val::Int(3),
                Val::opt_text(None),
                Val::opt_blob(Some(b"x")),
                Val::Null,
            ])?;
        }
        type Row = (i64, Option<String>, Option<Vec<u8>>, Option<i64>);
        let rows: Vec<Row> = rows_of(&conn)?;
        assert_eq!(
            rows,
            vec![
                (1, Some("héllo".into()), Some(vec![0, 1, 2]), None),
                (2, Some(String::new()), Some(vec![]), Some(7)),
                (3, None, Some(b"x".to_vec()), None),
            ]
        );
        Ok(())
    }

    #[test]
    fn values_left_bound_from_the_previous_row_are_stored_again() -> Result<(), rusqlite::Error> {
        let conn = table_of_four("")?;
        {
            let mut ins = RawInsert::prepare(&conn, INSERT_FOUR)?;
            let text = String::from("x");
            ins.run(&[Val::Int(1), Val::Static("GET"), Val::Null, Val::Int(5)])?;
            ins.run(&[Val::Int(2), Val::Static("GET"), Val::Null, Val::Int(5)])?;
            ins.run(&[
                Val::Int(3),
                Val::Static("PUT"),
                Val::Text(&text),
                Val::Int(5),
            ])?;
            ins.run(&[Val::Int(4), Val::Text(&text), Val::Null, Val::Int(6)])?;
            ins.run(&[Val::Int(5), Val::Static("PUT"), Val::Int(7), Val::Null])?;
        }
        type Row = (i64, String, rusqlite::types::Value, Option<i64>);
        let rows: Vec<Row> = rows_of(&conn)?;
        use rusqlite::types::Value;
        assert_eq!(
            rows,
            vec![
                (1, "GET".into(), Value::Null, Some(5)),
                (2, "GET".into(), Value::Null, Some(5)),
                (3, "PUT".into(), Value::Text("x".into()), Some(5)),
                (4, "x".into(), Value::Null, Some(6)),
                (5, "PUT".into(), Value::Integer(7), None),
            ]
        );
        Ok(())
    }
}
