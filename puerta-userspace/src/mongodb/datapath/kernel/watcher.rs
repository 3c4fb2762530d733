//! Close detection for spliced sockets without waking userspace per packet.
//!
//! Spliced sockets are taken out of tokio's reactor (which listens for EPOLLIN and would wake on every
//! skb) and registered in a private epoll instance for `EPOLLRDHUP` only (`EPOLLHUP`/`EPOLLERR` are
//! always reported). That epoll fd is itself watched by tokio, so one task dispatches close events to
//! the pairs' `Notify`s. That task starts with the first watched socket, so the kernel path can be
//! loaded before the tokio runtime exists (see [`crate::privileges`]).

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::unix::AsyncFd;
use tokio::sync::Notify;

pub struct Watcher {
    shared: Arc<Shared>,
    task: Mutex<Dispatch>,
}

/// The dispatch task starts with the first watched socket. The descriptor it registers with tokio is
/// duplicated up front, so the process's fd count does not change when that happens.
enum Dispatch {
    NotStarted(OwnedFd),
    Running(tokio::task::JoinHandle<()>),
    Stopped,
}

struct Shared {
    epoll: OwnedFd,
    next_token: AtomicU64,
    waiters: Mutex<HashMap<u64, Arc<Notify>>>,
}

/// A socket registered with the watcher; deregisters on drop (drop it before closing the socket).
pub struct Watch {
    shared: Arc<Shared>,
    token: u64,
    fd: RawFd,
}

impl Watcher {
    /// Creates the private epoll instance; needs no runtime.
    pub fn new() -> io::Result<Watcher> {
        // SAFETY: plain syscall; the result is checked and owned right away.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor we own.
        let epoll = unsafe { OwnedFd::from_raw_fd(fd) };
        let shared = Arc::new(Shared {
            epoll,
            next_token: AtomicU64::new(1),
            waiters: Mutex::new(HashMap::new()),
        });
        let dup = shared.epoll.try_clone()?;
        Ok(Watcher {
            shared,
            task: Mutex::new(Dispatch::NotStarted(dup)),
        })
    }

    /// Starts the dispatch task on the current tokio runtime unless it runs already.
    fn ensure_dispatch(&self) -> io::Result<()> {
        let mut task = lock(&self.task);
        if !matches!(*task, Dispatch::NotStarted(_)) {
            return Ok(());
        }
        let Dispatch::NotStarted(dup) = std::mem::replace(&mut *task, Dispatch::Stopped) else {
            return Ok(());
        };
        // SAFETY: `dup` is an OwnedFd moved into the AsyncFd, so it stays open and the same for its lifetime.
        let registered =
            unsafe { AsyncFd::register_with_interest(dup, tokio::io::Interest::READABLE) };
        let async_fd = match registered {
            Ok(async_fd) => async_fd,
            Err(e) => {
                // Keep the descriptor: the next watched socket tries again.
                let (dup, error) = e.into_parts();
                *task = Dispatch::NotStarted(dup);
                return Err(error);
            }
        };
        *task = Dispatch::Running(tokio::spawn(dispatch(async_fd, self.shared.clone())));
        Ok(())
    }

    /// Registers `fd`; `notify` is signalled on every RDHUP/HUP/ERR edge. Must run inside a tokio
    /// runtime (the first call starts the dispatch task there).
    pub fn watch(&self, fd: RawFd, notify: Arc<Notify>) -> io::Result<Watch> {
        self.ensure_dispatch()?;
        let token = self.shared.next_token.fetch_add(1, Ordering::Relaxed);
        lock(&self.shared.waiters).insert(token, notify);
        let mut event = libc::epoll_event {
            events: (libc::EPOLLRDHUP | libc::EPOLLET) as u32,
            u64: token,
        };
        // SAFETY: valid epoll fd, valid event pointer.
        let rc = unsafe {
            libc::epoll_ctl(
                self.shared.epoll.as_raw_fd(),
                libc::EPOLL_CTL_ADD,
                fd,
                &mut event,
            )
        };
        if rc != 0 {
            let err = io::Error::last_os_error();
            lock(&self.shared.waiters).remove(&token);
            return Err(err);
        }
        Ok(Watch {
            shared: self.shared.clone(),
            token,
            fd,
        })
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        if let Dispatch::Running(task) =
            std::mem::replace(&mut *lock(&self.task), Dispatch::Stopped)
        {
            task.abort();
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        // SAFETY: the socket is still open (Watch is dropped before it); a null event is allowed for DEL.
        unsafe {
            libc::epoll_ctl(
                self.shared.epoll.as_raw_fd(),
                libc::EPOLL_CTL_DEL,
                self.fd,
                std::ptr::null_mut(),
            );
        }
        lock(&self.shared.waiters).remove(&self.token);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

async fn dispatch(async_fd: AsyncFd<OwnedFd>, shared: Arc<Shared>) {
    const BATCH: usize = 256;
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; BATCH];
    loop {
        let Ok(mut guard) = async_fd.readable().await else {
            tracing::error!(
                "close watcher: epoll fd failed; spliced pairs will only close on drain"
            );
            return;
        };
        // SAFETY: events has BATCH slots; timeout 0 never blocks.
        let n = unsafe {
            libc::epoll_wait(
                shared.epoll.as_raw_fd(),
                events.as_mut_ptr(),
                BATCH as i32,
                0,
            )
        };
        if n <= 0 {
            guard.clear_ready();
            continue;
        }
        let waiters = lock(&shared.waiters);
        for event in &events[..n as usize] {
            let token = event.u64;
            if let Some(notify) = waiters.get(&token) {
                notify.notify_one();
            }
        }
        if (n as usize) < BATCH {
            guard.clear_ready();
        }
    }
}
