//! The storage seam: what the rest of mf may ask of a recording, whatever holds it.
//!
//! SQLite (a file) and PostgreSQL (a database shared by a team, `store::pg`) implement these
//! two traits; [`super::open_reader`] / [`super::open_writer`] pick one by the location.
//! Nothing outside the store names a backend's type.

use std::sync::{Arc, Mutex};

use super::{BodyKey, ExchangeSummary, PatternRow, Selection, StoreError};
use crate::model::Exchange;

/// Loads single exchanges by id from any thread: what a replay that keeps only an index in
/// memory calls when an answer is not in its cache.
pub trait ExchangeLoader: Send + Sync {
    /// One exchange with bodies and stream messages.
    ///
    /// # Errors
    /// [`StoreError::NoSuchExchange`], or the backend failed.
    fn load(&self, id: i64) -> Result<Exchange, StoreError>;
}

/// The loader of a backend without one of its own: one reader behind a lock (loads wait for
/// each other, which is still correct).
struct LockedReader(Mutex<Box<dyn RecordingRead>>);

impl ExchangeLoader for LockedReader {
    fn load(&self, id: i64) -> Result<Exchange, StoreError> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).load(id)
    }
}

/// What an index of requests looks at of `ex`, and nothing else: ids, protocol, start,
/// authority, request method, target and body, response status, timings, and the stream
/// messages of a gRPC call (its first request message picks among recorded calls).
pub fn lean(ex: Exchange) -> Exchange {
    use crate::model::{Body, Protocol, Request, Response};
    let grpc = ex.protocol == Some(Protocol::Grpc);
    Exchange {
        id: ex.id,
        connection_id: ex.connection_id,
        seq: ex.seq,
        protocol: ex.protocol,
        started_at_ns: ex.started_at_ns,
        authority: ex.authority,
        request: Request {
            method: ex.request.method,
            target: ex.request.target,
            body: Body {
                data: ex.request.body.data,
                size: ex.request.body.size,
                ..Body::default()
            },
            ..Request::default()
        },
        response: ex.response.map(|r| Response {
            status: r.status,
            ..Response::default()
        }),
        timings: ex.timings,
        messages: if grpc { ex.messages } else { Vec::new() },
        ..Exchange::default()
    }
}

/// Reading one recording: listing, single exchanges, every exchange in order, metadata and the
/// patterns `mf infer` stored. `Send`, so a reader can feed another thread.
pub trait RecordingRead: Send {
    /// Creation metadata as key/value pairs, sorted by key.
    ///
    /// # Errors
    /// The backend failed.
    fn meta(&self) -> Result<Vec<(String, String)>, StoreError>;

    /// Number of exchanges.
    ///
    /// # Errors
    /// The backend failed.
    fn count(&self) -> Result<u64, StoreError>;

    /// Up to `limit` listing rows with an id above `after_id`, in recording order: pages of a
    /// listing that need not fit in memory (start with `after_id = 0`).
    ///
    /// # Errors
    /// The backend failed.
    fn summaries_after(
        &self,
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<ExchangeSummary>, StoreError>;

    /// Every listing row in recording order.
    ///
    /// # Errors
    /// The backend failed.
    fn summaries(&self) -> Result<Vec<ExchangeSummary>, StoreError> {
        let mut all = Vec::new();
        loop {
            let after = all.last().map_or(0, |s: &ExchangeSummary| s.id);
            let page = self.summaries_after(after, 10_000)?;
            if page.is_empty() {
                return Ok(all);
            }
            all.extend(page);
        }
    }

    /// One exchange with bodies and stream messages.
    ///
    /// # Errors
    /// [`StoreError::NoSuchExchange`], or the backend failed.
    fn load(&self, id: i64) -> Result<Exchange, StoreError>;

    /// Calls `f` with every exchange in recording order, bodies included, one at a time
    /// (memory stays flat); `f` returning `false` stops the walk.
    ///
    /// # Errors
    /// The backend failed or holds a damaged exchange.
    fn for_each(&self, f: &mut dyn FnMut(Exchange) -> bool) -> Result<(), StoreError>;

    /// As [`RecordingRead::for_each`], lending each exchange instead: `f` may keep it by
    /// swapping another in, whose allocations the walk then reuses. For passes that read the
    /// whole recording once (inference), where the SQLite walk also maps the file.
    ///
    /// # Errors
    /// The backend failed or holds a damaged exchange.
    fn scan(&self, f: &mut dyn FnMut(&mut Exchange) -> bool) -> Result<(), StoreError> {
        self.for_each(&mut |mut ex| f(&mut ex))
    }

    /// As [`RecordingRead::for_each`], over the exchanges `selection` picks.
    ///
    /// # Errors
    /// The backend failed or holds a damaged exchange.
    fn for_each_selected(
        &self,
        selection: &Selection,
        f: &mut dyn FnMut(Exchange) -> bool,
    ) -> Result<(), StoreError>;

    /// Calls `f` with the listing row of every exchange `selection` picks, in recording
    /// order, one at a time (memory stays flat); `f` returning `false` stops the walk.
    ///
    /// # Errors
    /// The backend failed.
    fn for_each_summary(
        &self,
        selection: &Selection,
        f: &mut dyn FnMut(ExchangeSummary) -> bool,
    ) -> Result<(), StoreError>;

    /// Calls `f` with the connection id and method of every exchange, in recording order:
    /// what counting the requests of each connection needs, without a listing row's
    /// message counts and answer headers.
    ///
    /// # Errors
    /// The backend failed.
    fn for_each_connection_method(&self, f: &mut dyn FnMut(i64, &str)) -> Result<(), StoreError> {
        self.for_each_summary(&Selection::default(), &mut |s| {
            f(s.connection_id, &s.method);
            true
        })
    }

    /// Every exchange in recording order, bodies included.
    ///
    /// # Errors
    /// As [`RecordingRead::for_each`].
    fn load_all(&self) -> Result<Vec<Exchange>, StoreError> {
        let mut all = Vec::new();
        self.for_each(&mut |ex| {
            all.push(ex);
            true
        })?;
        Ok(all)
    }

    /// Calls `f` with `(method, target)` of every exchange in recording order, without
    /// headers or bodies: the cheap first pass of inference.
    ///
    /// # Errors
    /// The backend failed.
    fn for_each_target(&self, f: &mut dyn FnMut(&str, &str)) -> Result<(), StoreError>;

    /// Patterns stored by `mf infer`, in the order they were stored.
    ///
    /// # Errors
    /// The backend failed.
    fn patterns(&self) -> Result<Vec<PatternRow>, StoreError>;

    /// Calls `f` with every exchange in recording order as [`lean`] leaves it (request line,
    /// authority, protocol, status, timings, request body; stream messages of gRPC calls
    /// only), one at a time: what a replay indexes at start. A backend overrides this to
    /// skip reading what is left out.
    ///
    /// # Errors
    /// As [`RecordingRead::for_each`].
    fn for_each_lean(&self, f: &mut dyn FnMut(Exchange) -> bool) -> Result<(), StoreError> {
        self.for_each(&mut |ex| f(lean(ex)))
    }

    /// As [`RecordingRead::for_each_lean`], each exchange lent to `f` (a backend may refill
    /// one for every row, sparing its allocations; `f` may take what it holds, or swap in an
    /// exchange whose allocations the next row is to reuse) with the key its request body is matched
    /// by when the recording stored one: the body is then left out. `None`: the body is
    /// there, and the key is computed from it.
    ///
    /// # Errors
    /// As [`RecordingRead::for_each`].
    fn for_each_indexed(
        &self,
        f: &mut dyn FnMut(&mut Exchange, Option<BodyKey>) -> bool,
    ) -> Result<(), StoreError> {
        self.for_each_lean(&mut |mut ex| f(&mut ex, None))
    }

    /// The whole check of the recording's file, which opening it skipped (it reads every
    /// page): what a replay runs once it serves. Backends without one pass.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] with the first damage found, or the backend failed.
    fn check(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// A loader of single exchanges of this recording that many threads may call at once
    /// (a pool of connections), when the backend has one; `None` lets [`into_loader`] share
    /// this reader behind a lock.
    ///
    /// # Errors
    /// The backend failed.
    fn concurrent_loader(&self) -> Result<Option<Arc<dyn ExchangeLoader>>, StoreError> {
        Ok(None)
    }
}

/// A loader for `reader`'s recording: the backend's concurrent one, else `reader` itself
/// behind a lock.
///
/// # Errors
/// The backend failed.
pub fn into_loader(reader: Box<dyn RecordingRead>) -> Result<Arc<dyn ExchangeLoader>, StoreError> {
    match reader.concurrent_loader()? {
        Some(loader) => Ok(loader),
        None => Ok(Arc::new(LockedReader(Mutex::new(reader)))),
    }
}

/// Writing one recording: batches of exchanges and the patterns table. The batching writer
/// thread ([`super::Writer`]) and the bulk path ([`super::write_exchanges`]) drive it.
pub trait RecordingWrite: Send {
    /// Where connection ids of new exchanges should start, so that appending to a recording
    /// keeps them unique.
    ///
    /// # Errors
    /// The backend failed.
    fn connection_id_base(&self) -> Result<u64, StoreError>;

    /// Stores `batch` in order, atomically. An exchange that cannot be stored is passed to
    /// `rejected` with the reason and skipped; the rest are still stored.
    ///
    /// # Errors
    /// The batch as a whole could not be stored.
    fn append(
        &mut self,
        batch: &[Exchange],
        rejected: &mut dyn FnMut(&Exchange, StoreError),
    ) -> Result<(), StoreError>;

    /// Replaces the stored patterns with `patterns`, atomically (a second `mf infer` leaves
    /// exactly its own result).
    ///
    /// # Errors
    /// The backend failed.
    fn replace_patterns(&mut self, patterns: &[PatternRow]) -> Result<(), StoreError>;

    /// The producer is an offline import that can be run again: when the recording holds
    /// nothing yet, the backend may trade durability *during* the load for speed, as long
    /// as [`RecordingWrite::close`] still leaves everything durable. Default: nothing.
    ///
    /// # Errors
    /// The backend failed.
    fn bulk_load(&mut self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Makes everything written durable and self-contained; the writer is done.
    fn close(&mut self);
}
