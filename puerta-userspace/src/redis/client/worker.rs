//! Client workers: with `worker_threads` = N, Redis mode serves its clients on N threads that each run
//! a runtime of their own, and each worker's clients use node connections of their own (their pool
//! lanes, see [`Workers::lane`]), driven by that same thread. A command then never crosses threads:
//! the client's task, the node connection's writer and reader, and the reply board they share are
//! all woken on one thread, without the futex wake-ups and half-empty node writes of a work-stealing
//! runtime whose tasks wake each other across threads (docs/redis.md, "Worker threads", says what
//! that gained, and where two threads still lose to one).
//!
//! Worker 0 is the thread the daemon starts on, which also runs the front door, the admin endpoint,
//! the topology refresh and the reloads; workers 1.. are threads started here. A client is placed on
//! the worker with the fewest clients when it is accepted, and stays there.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

use crate::redis::client::tally::Tally;
use crate::redis::command::spec::{self, CommandSpec};
use crate::redis::node::pool::Lane;

thread_local! {
    /// The worker whose thread this is: 0 unless set by a worker thread.
    static CURRENT: Cell<usize> = const { Cell::new(0) };
}

/// The worker whose thread calls: 0 unless it is one of the threads [`Workers::start`] made.
pub fn current() -> usize {
    CURRENT.get()
}

/// The workers of one Redis mode instance: their runtimes' handles and how many clients each serves.
pub struct Workers {
    /// Workers 1..; worker 0 is the caller's own runtime.
    others: Vec<Handle>,
    clients: Vec<AtomicUsize>,
    /// Commands served, by worker.
    tallies: Vec<Tally>,
    /// Ends the worker threads' runtimes (dropping whatever still runs on them) when `Workers` goes.
    stop: CancellationToken,
}

impl Workers {
    /// Only worker 0, the caller's runtime: what tests and a single worker thread use.
    pub fn one() -> Workers {
        Workers {
            others: Vec::new(),
            clients: vec![AtomicUsize::new(0)],
            tallies: vec![Tally::default()],
            stop: CancellationToken::new(),
        }
    }

    /// Worker 0 plus `count - 1` threads, each with a current-thread runtime. Fails only when the
    /// system refuses a thread or a runtime (its epoll or timer descriptors).
    pub fn start(count: usize) -> std::io::Result<Workers> {
        let mut workers = Workers::one();
        for index in 1..count.max(1) {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            workers.others.push(runtime.handle().clone());
            workers.clients.push(AtomicUsize::new(0));
            workers.tallies.push(Tally::default());
            let stop = workers.stop.clone();
            std::thread::Builder::new()
                .name(format!("puerta-worker-{index}"))
                .spawn(move || {
                    CURRENT.set(index);
                    runtime.block_on(stop.cancelled());
                })?;
        }
        Ok(workers)
    }

    pub fn count(&self) -> usize {
        self.clients.len()
    }

    /// The lane of client `id` on the worker of the calling thread: lanes `s`, `s + count`,
    /// `s + 2 × count`, … of each pool belong to worker `s`, so that workers never share a connection
    /// (each pool has `pool_size × count` lanes).
    pub fn lane(&self, id: u64, pool_size: usize) -> Lane {
        let count = self.count();
        Lane::resp2(lane_index(id, pool_size, self.current(), count))
    }

    /// One command served by the calling thread's worker (`None`: not in the command table).
    pub fn count_command(&self, spec: Option<&'static CommandSpec>) {
        self.tallies[self.current()].count(spec);
    }

    /// Commands served by all workers, by command table entry; the last is those not in the
    /// table.
    pub fn commands(&self) -> Vec<u64> {
        (0..=spec::all().len())
            .map(|i| self.tallies.iter().map(|t| t.get(i)).sum())
            .collect()
    }

    /// The worker of the calling thread (0 for a thread that is no worker's).
    pub fn current(&self) -> usize {
        current().min(self.count() - 1)
    }

    /// Clients served now, by worker (for `/metrics`).
    pub fn clients(&self) -> Vec<usize> {
        self.clients
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect()
    }

    /// Serves `stream` with `serve` on the worker with the fewest clients, until `serve` is done.
    /// On another worker the socket moves to that worker's runtime (its epoll), so that its readiness
    /// wakes that thread.
    pub async fn serve<F, Fut>(self: &Arc<Self>, stream: TcpStream, serve: F)
    where
        F: FnOnce(TcpStream) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let worker = self.least_loaded();
        let _placed = Placed::new(self.clone(), worker);
        if worker == 0 {
            return serve(stream).await;
        }
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(e) => return tracing::warn!("cannot move a client to worker {worker}: {e}"),
        };
        let served = self.others[worker - 1].spawn(async move {
            match TcpStream::from_std(stream) {
                Ok(stream) => serve(stream).await,
                Err(e) => tracing::warn!("cannot register a client on worker {worker}: {e}"),
            }
        });
        // An error is the worker's runtime gone (the daemon is stopping): the client went with it.
        let _ = served.await;
    }

    fn least_loaded(&self) -> usize {
        let load = |i: usize| self.clients[i].load(Ordering::Relaxed);
        (0..self.count()).min_by_key(|&i| load(i)).unwrap_or(0)
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn lane_index(id: u64, pool_size: usize, worker: usize, count: usize) -> usize {
    (id as usize % pool_size.max(1)) * count + worker
}

/// A client counted on its worker while it is served.
struct Placed {
    workers: Arc<Workers>,
    worker: usize,
}

impl Placed {
    fn new(workers: Arc<Workers>, worker: usize) -> Placed {
        workers.clients[worker].fetch_add(1, Ordering::Relaxed);
        Placed { workers, worker }
    }
}

impl Drop for Placed {
    fn drop(&mut self) {
        self.workers.clients[self.worker].fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio::sync::{mpsc, oneshot};

    #[test]
    fn workers_never_share_a_lane() {
        for count in 1..=4 {
            for pool_size in 1..=3 {
                let lanes = pool_size * count;
                let mut owner = vec![None; lanes];
                for worker in 0..count {
                    let used: HashSet<usize> = (0..100)
                        .map(|id| lane_index(id, pool_size, worker, count) % lanes)
                        .collect();
                    assert_eq!(used.len(), pool_size, "a worker uses pool_size lanes");
                    for lane in used {
                        assert_eq!(owner[lane].replace(worker), None, "lane {lane} shared");
                    }
                }
            }
        }
    }

    /// A connected pair: what the proxy accepted, and the client's end.
    async fn accepted() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, listener.accept());
        (accepted.unwrap().0, client.unwrap())
    }

    /// Each client lands on the worker with the fewest, is served on that worker's thread (its
    /// socket works there), and is uncounted when done.
    #[tokio::test]
    async fn clients_spread_over_workers_and_are_served_on_their_thread() {
        let workers = Arc::new(Workers::start(2).unwrap());
        let (seen_tx, mut seen) = mpsc::unbounded_channel();
        let mut clients = Vec::new();
        let mut done = Vec::new();
        let mut served = Vec::new();
        for _ in 0..4 {
            let (stream, client) = accepted().await;
            let (finish, finished) = oneshot::channel::<()>();
            let seen_tx = seen_tx.clone();
            let workers2 = workers.clone();
            served.push(tokio::spawn(async move {
                workers2
                    .serve(stream, move |mut stream| async move {
                        let mut byte = [0u8; 1];
                        stream.read_exact(&mut byte).await.unwrap();
                        stream.write_all(&byte).await.unwrap();
                        seen_tx.send(CURRENT.get()).unwrap();
                        let _ = finished.await;
                    })
                    .await
            }));
            clients.push(client);
            done.push(finish);
            for _ in 0..1000 {
                if workers.clients().iter().sum::<usize>() == clients.len() {
                    break;
                }
                tokio::task::yield_now().await;
            }
        }
        assert_eq!(workers.clients(), vec![2, 2]);
        let mut on = Vec::new();
        for client in &mut clients {
            client.write_all(b"x").await.unwrap();
            let mut echo = [0u8; 1];
            client.read_exact(&mut echo).await.unwrap();
            assert_eq!(&echo, b"x");
            on.push(seen.recv().await.unwrap());
        }
        on.sort_unstable();
        assert_eq!(
            on,
            vec![0, 0, 1, 1],
            "two clients served on each worker's thread"
        );
        drop(done);
        for s in served {
            s.await.unwrap();
        }
        assert_eq!(workers.clients(), vec![0, 0]);
    }
}
