//! Connection threads: a few OS threads, each running its own single-threaded Tokio runtime,
//! that the accept loop deals accepted connections to (round robin).
//!
//! Why not the work-stealing runtime: with it, a readiness event that woke a task also woke
//! idle workers to look for work. Under wrk load perf put 12% of the recording proxy's
//! samples in cross-thread wake-ups, futex calls and task switches (`wake_by_val`,
//! `syscall`, `finish_task_switch`), with 0.5 context switches per request where nginx had
//! 0.2; one current-thread runtime used about a fifth less CPU per request in the same
//! interleaved rounds (35-46 µs against 40-61). Here a connection's socket is registered with
//! its own thread's reactor and its tasks never move, as in an nginx worker.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;

use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// Threads that connections are spread over. Dropping it stops the threads and drops what
/// their connections still hold (after the accept loop has given them their grace).
pub(crate) struct ConnThreads {
    handles: Vec<Handle>,
    next: AtomicUsize,
    stops: Vec<oneshot::Sender<()>>,
    threads: Vec<JoinHandle<()>>,
}

impl ConnThreads {
    /// Starts `count` (at least one) connection threads.
    ///
    /// # Errors
    /// A runtime or a thread could not be created (out of memory or threads).
    pub(crate) fn start(count: usize) -> std::io::Result<ConnThreads> {
        let mut pool = ConnThreads {
            handles: Vec::new(),
            next: AtomicUsize::new(0),
            stops: Vec::new(),
            threads: Vec::new(),
        };
        for i in 0..count.max(1) {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let (stop, stopped) = oneshot::channel::<()>();
            pool.handles.push(rt.handle().clone());
            pool.stops.push(stop);
            let thread = std::thread::Builder::new()
                .name(format!("mf-conn-{i}"))
                .spawn(move || {
                    // Drives every connection spawned onto this runtime until asked to stop;
                    // dropping the runtime then drops the connections left.
                    let _ = rt.block_on(stopped);
                })?;
            pool.threads.push(thread);
        }
        Ok(pool)
    }

    /// The runtime the next connection goes to.
    pub(crate) fn next(&self) -> &Handle {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.handles.len();
        &self.handles[i]
    }
}

impl Drop for ConnThreads {
    fn drop(&mut self) {
        for stop in self.stops.drain(..) {
            let _ = stop.send(());
        }
        let me = std::thread::current().id();
        for thread in self.threads.drain(..) {
            // Never wait for the thread this runs on (a connection holding the last owner).
            if thread.thread().id() != me {
                let _ = thread.join();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tasks_run_on_the_threads_and_stop_with_them() {
        let pool = ConnThreads::start(2).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        for _ in 0..4 {
            let tx = tx.clone();
            pool.next().spawn(async move {
                let name = std::thread::current().name().map(str::to_owned);
                let _ = tx.send(name);
            });
        }
        let mut names: Vec<_> = (0..4).map(|_| rx.recv().unwrap().unwrap()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names, ["mf-conn-0", "mf-conn-1"]);
        // A task that never ends does not keep the pool from stopping.
        pool.next().spawn(std::future::pending::<()>());
        drop(pool);
    }
}
