//! One client connection from accept to close: route it, connect to the mongos (falling back to another
//! healthy one if the connect fails), write the PROXY header, then hand both sockets to the forwarder.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::placement::router::{Route, Router};
use super::stats::{stats, ActiveFlow, MongoStats};
use crate::log_throttle::LogThrottle;
use crate::mongodb::connect::connect;
use crate::mongodb::datapath::forward::{failed_side, FlowBytes, Forwarder, KernelForwarder, Side};
use crate::mongodb::datapath::kernel::{AdoptedPair, KernelPath};
use crate::mongodb::datapath::proxy_protocol;

/// What every flow shares.
pub struct FlowContext {
    pub router: Router,
    pub forwarder: Arc<Forwarder>,
    pub connect_timeout: Duration,
    /// `client_idle_timeout_sec` as it was when the flow started.
    pub idle_timeout: Option<Duration>,
    pub no_backend_log: LogThrottle,
    /// Idle closes come in waves (a pool of drivers going quiet): one info line per period.
    pub idle_log: LogThrottle,
    /// Flows broken by their mongos (reset mid-stream) can come in bursts: one line per period.
    pub backend_failure_log: LogThrottle,
}

/// Runs one flow to its end (the front door holds its admission permit until then).
pub async fn run(ctx: Arc<FlowContext>, client: TcpStream, peer: SocketAddr) {
    let _active = ActiveFlow::start();
    MongoStats::count(&stats().accepted);
    let _ = client.set_nodelay(true);
    let Some(mut route) = ctx.router.route(peer.ip()) else {
        MongoStats::count(&stats().no_backend);
        if let Some(n) = ctx.no_backend_log.hit(Instant::now()) {
            tracing::warn!(
                clients_closed = n,
                "closing client {peer}: no healthy mongos"
            );
        }
        return;
    };
    let Some(mut backend) = connect_with_fallback(&ctx, &mut route, peer).await else {
        return;
    };
    let endpoint = ctx.router.backends().endpoint(route.backend);
    if let Err(e) = write_proxy_header(&client, &mut backend, endpoint.proxy_protocol, peer).await {
        tracing::warn!("cannot write PROXY header to mongos {endpoint} for {peer}: {e}");
        return;
    }
    let _counted = ctx.router.backends().track(route.backend);
    tracing::debug!(client = %peer, backend = %endpoint, "flow connected");
    let forwarded = ctx
        .forwarder
        .forward_to(client, backend, route.backend, ctx.idle_timeout)
        .await;
    report_end(&ctx, peer, &endpoint.to_string(), forwarded);
}

/// Runs a spliced pair the previous instance handed over, from where it was, to its end.
pub async fn run_adopted(ctx: Arc<FlowContext>, kernel: KernelPath, adopted: AdoptedPair) {
    let _active = ActiveFlow::start();
    let backends = ctx.router.backends();
    let index = adopted
        .backend
        .as_deref()
        .and_then(|a| backends.position(a));
    let _counted = index.map(|i| backends.track(i));
    let peer = adopted
        .client_peer()
        .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
    let endpoint = adopted.backend.clone().unwrap_or_else(|| "-".to_string());
    let spliced = kernel.run_adopted(adopted, ctx.idle_timeout).await;
    let forwarded = spliced.and_then(KernelForwarder::flow_bytes);
    report_end(&ctx, peer, &endpoint, forwarded);
}

fn report_end(
    ctx: &FlowContext,
    peer: SocketAddr,
    endpoint: &str,
    forwarded: std::io::Result<FlowBytes>,
) {
    match forwarded {
        Ok(bytes) if bytes.handed_over => tracing::debug!(
            client = %peer,
            backend = %endpoint,
            "flow handed over, live, to the next instance"
        ),
        Ok(bytes) if bytes.closed_idle => log_idle_close(ctx, peer),
        Ok(bytes) => tracing::debug!(
            client = %peer,
            backend = %endpoint,
            up = bytes.client_to_backend,
            down = bytes.backend_to_client,
            "flow closed"
        ),
        Err(e) if failed_side(&e) == Some(Side::Backend) => {
            if let Some(n) = ctx.backend_failure_log.hit(Instant::now()) {
                tracing::warn!(
                    client = %peer,
                    backend = %endpoint,
                    flows = n,
                    "mongos {endpoint} broke the flow of {peer}: {e}"
                );
            }
        }
        Err(e) => tracing::debug!(client = %peer, backend = %endpoint, "flow ended: {e}"),
    }
}

/// Counts and logs a flow the idle timeout closed: at info at most once per period (saying how many
/// closes it stands for), at debug otherwise.
fn log_idle_close(ctx: &FlowContext, peer: SocketAddr) {
    MongoStats::count(&stats().closed_idle);
    let idle = ctx.idle_timeout.unwrap_or_default().as_secs();
    match ctx.idle_log.hit(Instant::now()) {
        Some(n) => tracing::info!(
            clients_closed = n,
            client = %peer,
            "closed idle client {peer}: no data either way for {idle} s (client_idle_timeout_sec)"
        ),
        None => tracing::debug!(client = %peer, "closed idle client {peer}"),
    }
}

/// Connects to the routed backend, moving to other healthy ones on failure. `None` when every healthy
/// backend failed (the client is then closed).
async fn connect_with_fallback(
    ctx: &FlowContext,
    route: &mut Route,
    peer: SocketAddr,
) -> Option<TcpStream> {
    let mut tried = Vec::new();
    loop {
        let endpoint = ctx.router.backends().endpoint(route.backend);
        let result = tokio::time::timeout(ctx.connect_timeout, connect(endpoint)).await;
        let error = match result {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                return Some(stream);
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no connection within {:?}", ctx.connect_timeout),
        };
        MongoStats::count(&stats().connect_failures);
        tried.push(route.backend);
        let retry = ctx.router.reroute(route, &tried);
        tracing::warn!(
            client = %peer,
            backend = %endpoint,
            "cannot connect to mongos {endpoint} for {peer}: {error}{}",
            if retry { "; trying another" } else { "; no other healthy mongos, closing client" }
        );
        if !retry {
            return None;
        }
    }
}

async fn write_proxy_header(
    client: &TcpStream,
    backend: &mut TcpStream,
    version: crate::config::ProxyProtocol,
    peer: SocketAddr,
) -> std::io::Result<()> {
    let local = client.local_addr()?;
    if let Some(header) = proxy_protocol::header(version, peer, local) {
        backend.write_all(&header).await?;
    }
    Ok(())
}
