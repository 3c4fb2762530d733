//! The verdict program's flow reports (a BPF ring buffer of source cookies) dispatched to the pairs
//! they concern. A pair hears from the kernel only when one of its directions has redirected as much
//! as its check point allows, so an idle or slow pair costs nothing and a fast one a wake-up per
//! `kernel_backlog_kib` moved. The dispatch task starts with the first pair, inside the runtime, so
//! the kernel path can still be loaded before any thread exists.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex};

use aya::maps::{MapData, RingBuf};
use puerta_common::FlowEvent;
use tokio::io::unix::AsyncFd;
use tokio::sync::Notify;

pub struct FlowEvents {
    waiters: Arc<Mutex<HashMap<u64, Arc<Notify>>>>,
    task: Mutex<Dispatch>,
}

enum Dispatch {
    NotStarted(RingBuf<MapData>),
    Running(tokio::task::JoinHandle<()>),
    Stopped,
}

/// A pair's registration for reports on its source cookies; deregisters on drop.
pub struct Subscription {
    waiters: Arc<Mutex<HashMap<u64, Arc<Notify>>>>,
    cookies: [u64; 2],
}

impl FlowEvents {
    pub fn new(ring: RingBuf<MapData>) -> FlowEvents {
        FlowEvents {
            waiters: Arc::default(),
            task: Mutex::new(Dispatch::NotStarted(ring)),
        }
    }

    /// Signals `notify` whenever the kernel reports either cookie. Must run inside a tokio runtime.
    pub fn subscribe(&self, cookies: [u64; 2], notify: Arc<Notify>) -> io::Result<Subscription> {
        self.ensure_dispatch()?;
        let mut waiters = lock(&self.waiters);
        for cookie in cookies {
            waiters.insert(cookie, notify.clone());
        }
        Ok(Subscription {
            waiters: self.waiters.clone(),
            cookies,
        })
    }

    fn ensure_dispatch(&self) -> io::Result<()> {
        let mut task = lock(&self.task);
        match *task {
            Dispatch::Running(_) => return Ok(()),
            Dispatch::Stopped => return Err(io::Error::other("flow event dispatch stopped")),
            Dispatch::NotStarted(_) => {}
        }
        let Dispatch::NotStarted(ring) = std::mem::replace(&mut *task, Dispatch::Stopped) else {
            return Ok(());
        };
        // SAFETY: the ring buffer map is moved into the AsyncFd, so its descriptor stays open and
        // the same for the AsyncFd's lifetime.
        let registered =
            unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) };
        match registered {
            Ok(async_fd) => {
                let waiters = self.waiters.clone();
                *task = Dispatch::Running(tokio::spawn(dispatch(async_fd, waiters)));
                Ok(())
            }
            Err(e) => {
                // Keep the ring: the next pair tries again.
                let (ring, error) = e.into_parts();
                *task = Dispatch::NotStarted(ring);
                Err(error)
            }
        }
    }
}

impl Drop for FlowEvents {
    fn drop(&mut self) {
        if let Dispatch::Running(task) =
            std::mem::replace(&mut *lock(&self.task), Dispatch::Stopped)
        {
            task.abort();
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut waiters = lock(&self.waiters);
        for cookie in self.cookies {
            waiters.remove(&cookie);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

async fn dispatch(
    mut async_fd: AsyncFd<RingBuf<MapData>>,
    waiters: Arc<Mutex<HashMap<u64, Arc<Notify>>>>,
) {
    loop {
        let Ok(mut guard) = async_fd.readable_mut().await else {
            tracing::error!("kernel flow reports failed; spliced flows are no longer held back");
            return;
        };
        let ring = guard.get_inner_mut();
        let mut cookies = Vec::new();
        while let Some(item) = ring.next() {
            if let Some(cookie) = cookie_of(&item) {
                cookies.push(cookie);
            }
        }
        guard.clear_ready();
        let waiters = lock(&waiters);
        for cookie in cookies {
            if let Some(notify) = waiters.get(&cookie) {
                notify.notify_one();
            }
        }
    }
}

fn cookie_of(record: &[u8]) -> Option<u64> {
    let bytes: [u8; 8] = record.get(..size_of::<FlowEvent>())?.try_into().ok()?;
    Some(u64::from_ne_bytes(bytes))
}
