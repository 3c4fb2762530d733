//! What goes over after READY: the mode's state, one item per line, some items carrying
//! descriptors (MongoDB's spliced kernel-path pairs: the two sockets, and the sockhash that keeps
//! their program running).
//!
//! A new instance that answered `READY fds` gets items framed as `<n> <text>\n`, the `n`
//! descriptors riding as SCM_RIGHTS on the same `sendmsg`; `END\n` closes the state. One that
//! answered plain `READY` (it takes no descriptors, or speaks version 1) gets `<text>\n` lines, and
//! the mode keeps what it could only hand over with descriptors.
//!
//! The receiver does not rely on message boundaries, which a stream socket does not keep: bytes and
//! descriptors both arrive in order, and a line's descriptors come with its first byte, so by the
//! time a line is complete its descriptors are queued.

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, IoSlice, IoSliceMut, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};

/// Bounds what a previous instance may make this one read.
const MAX_STATE_BYTES: usize = 256 * 1024 * 1024;
/// The kernel's own limit of descriptors per message (SCM_MAX_FD).
const MAX_FDS_PER_MESSAGE: usize = 253;

/// One line of state, and the descriptors that go with it.
#[derive(Debug)]
pub struct Item {
    pub line: String,
    pub fds: Vec<OwnedFd>,
}

impl Item {
    pub fn line(line: String) -> Item {
        Item {
            line,
            fds: Vec::new(),
        }
    }
}

/// Sends `items` then `END`. Without `framed`, items with descriptors are left out (the mode was
/// asked for lines only; an item that still has some is a bug, and its sockets close here).
pub(super) fn send(stream: &UnixStream, items: Vec<Item>, framed: bool) -> io::Result<()> {
    let mut text = Vec::with_capacity(64 * 1024);
    for item in items {
        debug_assert!(!item.line.contains('\n'), "{:?}", item.line);
        if !framed {
            if !item.fds.is_empty() {
                tracing::error!(line = %item.line, "state with descriptors asked for as lines; dropped");
                continue;
            }
            text.extend_from_slice(item.line.as_bytes());
            text.push(b'\n');
        } else if item.fds.is_empty() {
            text.extend_from_slice(b"0 ");
            text.extend_from_slice(item.line.as_bytes());
            text.push(b'\n');
        } else {
            // Lines before it go first, so the order is kept.
            (&*stream).write_all(&text)?;
            text.clear();
            send_with_fds(stream, &item)?;
        }
        if text.len() >= 64 * 1024 {
            (&*stream).write_all(&text)?;
            text.clear();
        }
    }
    text.extend_from_slice(b"END\n");
    (&*stream).write_all(&text)
}

fn send_with_fds(stream: &UnixStream, item: &Item) -> io::Result<()> {
    if item.fds.len() > MAX_FDS_PER_MESSAGE {
        return Err(io::Error::other(format!(
            "{} descriptors on one line",
            item.fds.len()
        )));
    }
    let line = format!("{} {}\n", item.fds.len(), item.line);
    let fds: Vec<RawFd> = item.fds.iter().map(|fd| fd.as_raw_fd()).collect();
    let sent = send_rights(stream, line.as_bytes(), &fds)?;
    // The descriptors went with the first byte; the rest of a cut line follows as plain bytes.
    (&*stream).write_all(&line.as_bytes()[sent..])
}

/// One `sendmsg` of `bytes` with `fds` attached (SCM_RIGHTS); the bytes it took.
pub(super) fn send_rights(stream: &UnixStream, bytes: &[u8], fds: &[RawFd]) -> io::Result<usize> {
    let rights = [ControlMessage::ScmRights(fds)];
    sendmsg::<()>(
        stream.as_raw_fd(),
        &[IoSlice::new(bytes)],
        &rights,
        MsgFlags::empty(),
        None,
    )
    .map_err(io::Error::from)
}

/// One `recvmsg` into `buf`; the descriptors that came with the bytes are added to `fds`.
pub(super) fn receive_rights(
    stream: &UnixStream,
    buf: &mut [u8],
    fds: &mut impl Extend<OwnedFd>,
) -> io::Result<usize> {
    let mut iov = [IoSliceMut::new(buf)];
    let mut space = nix::cmsg_space!([RawFd; MAX_FDS_PER_MESSAGE]);
    let msg = recvmsg::<()>(
        stream.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(io::Error::from)?;
    for cmsg in msg.cmsgs().map_err(io::Error::from)? {
        if let ControlMessageOwned::ScmRights(raw) = cmsg {
            // SAFETY: the kernel just installed these descriptors in this process for us alone.
            fds.extend(
                raw.into_iter()
                    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
            );
        }
    }
    if msg.flags.contains(MsgFlags::MSG_CTRUNC) {
        return Err(io::Error::other("descriptors were cut off"));
    }
    Ok(msg.bytes)
}

/// Reads the state up to `END`: framed items when this instance asked for descriptors, else
/// plain lines.
pub(super) fn receive(stream: UnixStream, framed: bool) -> io::Result<Vec<Item>> {
    if framed {
        FramedReader::default().read_all(&stream)
    } else {
        receive_lines(stream)
    }
}

fn receive_lines(stream: UnixStream) -> io::Result<Vec<Item>> {
    let mut items = Vec::new();
    for line in BufReader::new(stream.take(MAX_STATE_BYTES as u64)).lines() {
        let line = line?;
        if line == "END" {
            return Ok(items);
        }
        items.push(Item::line(line));
    }
    Err(io::Error::other("the state ended without END"))
}

#[derive(Default)]
struct FramedReader {
    pending: Vec<u8>,
    fds: VecDeque<OwnedFd>,
    read: usize,
    items: Vec<Item>,
}

impl FramedReader {
    fn read_all(mut self, stream: &UnixStream) -> io::Result<Vec<Item>> {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = self.receive(stream, &mut buf)?;
            if n == 0 {
                return Err(io::Error::other("the state ended without END"));
            }
            self.read += n;
            if self.read > MAX_STATE_BYTES {
                return Err(io::Error::other("the state is too large"));
            }
            self.pending.extend_from_slice(&buf[..n]);
            if self.take_lines()? {
                return Ok(self.items);
            }
        }
    }

    fn receive(&mut self, stream: &UnixStream, buf: &mut [u8]) -> io::Result<usize> {
        receive_rights(stream, buf, &mut self.fds)
    }

    /// Moves complete lines to `items`; true at `END`.
    fn take_lines(&mut self) -> io::Result<bool> {
        let mut start = 0;
        let mut ended = false;
        while let Some(at) = self.pending[start..].iter().position(|&b| b == b'\n') {
            let line = &self.pending[start..start + at];
            start += at + 1;
            if line == b"END" {
                ended = true;
                break;
            }
            let item = item(line, &mut self.fds)?;
            self.items.push(item);
        }
        self.pending.drain(..start);
        Ok(ended)
    }
}

/// One framed line, taking the descriptors it announces from those that arrived.
fn item(line: &[u8], fds: &mut VecDeque<OwnedFd>) -> io::Result<Item> {
    let bad = || {
        io::Error::other(format!(
            "bad state line {:?}",
            String::from_utf8_lossy(line)
        ))
    };
    let line = std::str::from_utf8(line).map_err(|_| bad())?;
    let (count, text) = line.split_once(' ').ok_or_else(bad)?;
    let count: usize = count.parse().map_err(|_| bad())?;
    if count > fds.len() {
        return Err(io::Error::other(format!(
            "{line:?} announces {count} descriptors, {} arrived",
            fds.len()
        )));
    }
    Ok(Item {
        line: text.to_string(),
        fds: fds.drain(..count).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    fn inode(fd: impl AsFd) -> u64 {
        nix::sys::stat::fstat(fd.as_fd().as_raw_fd())
            .unwrap()
            .st_ino
    }

    #[test]
    fn items_keep_their_order_and_their_descriptors() {
        let (a, b) = UnixStream::pair().unwrap();
        let files: Vec<std::fs::File> = (0..3).map(|_| tempfile::tempfile().unwrap()).collect();
        let inodes: Vec<u64> = files.iter().map(inode).collect();
        let mut items: Vec<Item> = (0..5000).map(|i| Item::line(format!("pin {i}"))).collect();
        items.insert(
            10,
            Item {
                line: "pair one".into(),
                fds: vec![
                    files[0].try_clone().unwrap().into(),
                    files[1].try_clone().unwrap().into(),
                ],
            },
        );
        items.push(Item {
            line: "pair two".into(),
            fds: vec![files[2].try_clone().unwrap().into()],
        });
        let sender = std::thread::spawn(move || send(&a, items, true));
        let got = receive(b, true).unwrap();
        sender.join().unwrap().unwrap();
        assert_eq!(got.len(), 5002);
        assert_eq!(got[10].line, "pair one");
        assert_eq!(
            got[10].fds.iter().map(inode).collect::<Vec<_>>(),
            inodes[..2]
        );
        assert_eq!(got[11].line, "pin 10");
        assert!(got[11].fds.is_empty());
        assert_eq!(got[5001].line, "pair two");
        assert_eq!(inode(&got[5001].fds[0]), inodes[2]);
    }

    #[test]
    fn lines_only_leave_descriptors_out() {
        let (a, b) = UnixStream::pair().unwrap();
        let file = tempfile::tempfile().unwrap();
        let items = vec![
            Item::line("10.0.0.1 a:1".into()),
            Item {
                line: "pair".into(),
                fds: vec![file.into()],
            },
        ];
        send(&a, items, false).unwrap();
        let got = receive(b, false).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].line, "10.0.0.1 a:1");
    }

    #[test]
    fn a_line_announcing_descriptors_that_never_came_is_refused() {
        let (mut a, b) = UnixStream::pair().unwrap();
        a.write_all(b"2 pair\nEND\n").unwrap();
        let e = receive(b, true).unwrap_err();
        assert!(e.to_string().contains("announces 2"), "{e}");
    }

    #[test]
    fn a_state_without_end_is_an_error() {
        let (mut a, b) = UnixStream::pair().unwrap();
        a.write_all(b"0 pin\n").unwrap();
        drop(a);
        assert!(receive(b, true).is_err());
    }
}
