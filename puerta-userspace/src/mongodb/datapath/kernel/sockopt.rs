//! The few socket facts the splice needs that std/tokio do not expose: the socket cookie (the key in
//! the sockhash), TCP byte counters (to know when a peer has taken everything before forwarding a FIN),
//! queue sizes, and the knobs used to flush and abort.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

/// `tcpi_bytes_acked` / `tcpi_bytes_received` offsets in `struct tcp_info` (uapi/linux/tcp.h, stable
/// since 4.1); libc's `tcp_info` stops before them.
const TCPI_STATE: usize = 0;
/// Milliseconds since the socket last sent / received payload (`tcpi_last_data_sent` /
/// `tcpi_last_data_recv`, u32, present since the first `tcp_info`).
const TCPI_LAST_DATA_SENT: usize = 44;
const TCPI_LAST_DATA_RECV: usize = 52;
const TCPI_BYTES_ACKED: usize = 120;
const TCPI_BYTES_RECEIVED: usize = 128;
const TCPI_MIN_LEN: usize = TCPI_BYTES_RECEIVED + 8;

/// `TCP_CLOSE` in `tcpi_state`: the socket was reset or fully closed.
pub const TCP_STATE_CLOSE: u8 = 7;

/// What `TCP_INFO` says about the bytes that went through a socket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TcpCounters {
    pub state: u8,
    /// Payload bytes the peer acknowledged (data we sent that left for good).
    pub bytes_acked: u64,
    /// Payload bytes received in sequence (a received FIN may add one).
    pub bytes_received: u64,
}

fn getsockopt_raw(fd: RawFd, level: i32, name: i32, buf: &mut [u8]) -> io::Result<usize> {
    let mut len = buf.len() as libc::socklen_t;
    // SAFETY: buf is valid for `len` bytes and the kernel writes at most `len`.
    let rc = unsafe { libc::getsockopt(fd, level, name, buf.as_mut_ptr().cast(), &mut len) };
    if rc == 0 {
        Ok(len as usize)
    } else {
        Err(io::Error::last_os_error())
    }
}

fn setsockopt_int(fd: RawFd, level: i32, name: i32, value: i32) -> io::Result<()> {
    // SAFETY: passes a pointer to a live i32 with its size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The kernel's 64-bit id of the socket (`SO_COOKIE`), the same value `bpf_get_socket_cookie` returns.
pub fn cookie(sock: &impl AsRawFd) -> io::Result<u64> {
    let mut buf = [0u8; 8];
    let len = getsockopt_raw(
        sock.as_raw_fd(),
        libc::SOL_SOCKET,
        libc::SO_COOKIE,
        &mut buf,
    )?;
    if len != 8 {
        return Err(io::Error::other("SO_COOKIE returned a short value"));
    }
    Ok(u64::from_ne_bytes(buf))
}

pub fn tcp_counters(sock: &impl AsRawFd) -> io::Result<TcpCounters> {
    let info = tcp_info(sock)?;
    Ok(TcpCounters {
        state: info[TCPI_STATE],
        bytes_acked: u64_at(&info, TCPI_BYTES_ACKED),
        bytes_received: u64_at(&info, TCPI_BYTES_RECEIVED),
    })
}

/// How long the socket has carried no payload in either direction, as TCP itself keeps it: the
/// kernel-spliced path never shows its bytes to userspace, so this is the one clock both data paths
/// share. Pure ACKs, keepalives and window probes do not count as data.
pub fn quiet_for(sock: &impl AsRawFd) -> io::Result<Duration> {
    let info = tcp_info(sock)?;
    let ms = u32_at(&info, TCPI_LAST_DATA_SENT).min(u32_at(&info, TCPI_LAST_DATA_RECV));
    Ok(Duration::from_millis(u64::from(ms)))
}

/// The raw `struct tcp_info`, at least [`TCPI_MIN_LEN`] bytes of it.
fn tcp_info(sock: &impl AsRawFd) -> io::Result<[u8; 256]> {
    let mut buf = [0u8; 256];
    let len = getsockopt_raw(
        sock.as_raw_fd(),
        libc::IPPROTO_TCP,
        libc::TCP_INFO,
        &mut buf,
    )?;
    if len < TCPI_MIN_LEN {
        return Err(io::Error::other(
            "TCP_INFO too short (kernel older than 4.1)",
        ));
    }
    Ok(buf)
}

fn u64_at(buf: &[u8], off: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&buf[off..off + 8]);
    u64::from_ne_bytes(b)
}

fn u32_at(buf: &[u8], off: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&buf[off..off + 4]);
    u32::from_ne_bytes(b)
}

fn ioctl_int(sock: &impl AsRawFd, request: libc::Ioctl) -> io::Result<u64> {
    let mut value: libc::c_int = 0;
    // SAFETY: SIOCINQ/SIOCOUTQ write one int.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), request, &mut value) };
    if rc == 0 {
        Ok(value.max(0) as u64)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Bytes received and not yet read (`SIOCINQ`).
pub fn unread(sock: &impl AsRawFd) -> io::Result<u64> {
    ioctl_int(sock, libc::FIONREAD)
}

/// Bytes in the send queue, sent or not, that the peer has not acknowledged (`SIOCOUTQ`).
pub fn unacked(sock: &impl AsRawFd) -> io::Result<u64> {
    ioctl_int(sock, libc::TIOCOUTQ)
}

/// `SO_MEMINFO` (asm-generic/socket.h); libc has only the offsets into its answer.
const SO_MEMINFO: i32 = 55;

/// Memory of the skbs in the receive queue (`SK_MEMINFO_RMEM_ALLOC`): with the socket in the sockhash
/// an skb leaves it when the verdict takes it, so this is what still waits for one.
pub fn receive_queue_memory(sock: &impl AsRawFd) -> io::Result<u32> {
    let mut buf = [0u8; 64];
    let len = getsockopt_raw(sock.as_raw_fd(), libc::SOL_SOCKET, SO_MEMINFO, &mut buf)?;
    let at = libc::SK_MEMINFO_RMEM_ALLOC as usize * 4;
    if len < at + 4 {
        return Err(io::Error::other("SO_MEMINFO returned a short value"));
    }
    Ok(u32_at(&buf, at))
}

/// The receive buffer limit (`SO_RCVBUF`, as the kernel keeps it: twice what was set).
pub fn receive_buffer(sock: &impl AsRawFd) -> io::Result<u32> {
    let mut buf = [0u8; 4];
    getsockopt_raw(
        sock.as_raw_fd(),
        libc::SOL_SOCKET,
        libc::SO_RCVBUF,
        &mut buf,
    )?;
    Ok(u32::from_ne_bytes(buf))
}

/// Sets the receive buffer limit to `kept` as [`receive_buffer`] reports it (the kernel doubles what
/// it is given). `SO_RCVBUFFORCE` passes `rmem_max` where the capability allows it.
pub fn set_receive_buffer(sock: &impl AsRawFd, kept: u32) -> io::Result<()> {
    let value = i32::try_from(kept / 2).unwrap_or(i32::MAX);
    let fd = sock.as_raw_fd();
    setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, value)
        .or_else(|_| setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, value))
}

/// The largest window TCP will advertise (`TCP_WINDOW_CLAMP`). TCP lowers it on its own to what the
/// receive buffer allows when a segment changes its payload-to-memory estimate, and never raises it
/// again while the buffer is locked (any `SO_RCVBUF` locks it).
pub fn window_clamp(sock: &impl AsRawFd) -> io::Result<u32> {
    let mut buf = [0u8; 4];
    getsockopt_raw(
        sock.as_raw_fd(),
        libc::IPPROTO_TCP,
        libc::TCP_WINDOW_CLAMP,
        &mut buf,
    )?;
    Ok(u32::from_ne_bytes(buf))
}

/// Sets the window clamp back to `kept` from [`window_clamp`]; raising it lets the window grow again.
pub fn set_window_clamp(sock: &impl AsRawFd, kept: u32) -> io::Result<()> {
    let value = i32::try_from(kept).unwrap_or(i32::MAX);
    setsockopt_int(
        sock.as_raw_fd(),
        libc::IPPROTO_TCP,
        libc::TCP_WINDOW_CLAMP,
        value,
    )
}

/// Re-setting `SO_RCVLOWAT` makes TCP call `sk_data_ready` when data is queued; with the socket in the
/// sockhash that runs the verdict over everything that arrived before insertion, in order. It runs
/// without the socket lock: see `splice::kick` for when that is safe.
pub fn kick_data_ready(sock: &impl AsRawFd) -> io::Result<()> {
    setsockopt_int(sock.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVLOWAT, 1)
}

/// Pending socket error (`SO_ERROR`), e.g. `ECONNRESET` after a RST.
pub fn take_error(sock: &impl AsRawFd) -> io::Result<Option<io::Error>> {
    let mut buf = [0u8; 4];
    getsockopt_raw(sock.as_raw_fd(), libc::SOL_SOCKET, libc::SO_ERROR, &mut buf)?;
    let errno = i32::from_ne_bytes(buf);
    Ok((errno != 0).then(|| io::Error::from_raw_os_error(errno)))
}

/// Makes the next `close()` send a RST instead of a FIN, so an abort on one side reaches the other.
pub fn set_linger_zero(sock: &impl AsRawFd) -> io::Result<()> {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: passes a pointer to a live linger struct with its size.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
