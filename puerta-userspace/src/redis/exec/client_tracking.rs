//! `CLIENT TRACKING`, `CLIENT CACHING`, `CLIENT GETREDIR`, `CLIENT TRACKINGINFO` over the proxy's
//! tracking table (see `client::tracking`).

use std::sync::Arc;
use std::time::Duration;

use crate::redis::client::tracking::options::{self, Request};
use crate::redis::client::tracking::{feed, NewTracker};
use crate::redis::cluster::Cluster;
use crate::redis::command::Command;
use crate::redis::exec::dispatch::{later, ClientState, Reply};
use crate::redis::resp::{wire, Frame};

/// `CLIENT TRACKING ON|OFF …`. ON answers once every master's invalidation feed is up.
pub fn tracking(cluster: &Arc<Cluster>, state: &mut ClientState, cmd: &Command) -> Reply {
    let request = match options::parse(&cmd.args()[2..], state.tracking.as_ref()) {
        Ok(request) => request,
        Err(e) => return Reply::Ready(e),
    };
    let mode = match request {
        Request::Off => {
            stop(cluster, state);
            return Reply::Ready(wire::ok());
        }
        Request::On(mode) => mode,
    };
    let redirect = match mode.redirect {
        Some(id) => match cluster.clients.get(id) {
            Some(target) => Some(target),
            None => {
                return Reply::Ready(wire::error(
                    "ERR The client ID you want redirect to does not exist",
                ))
            }
        },
        None => None,
    };
    let receiver = redirect.as_ref().unwrap_or(&state.client);
    let Some(inbox) = receiver.inbox().cloned() else {
        return Reply::Ready(wire::error("ERR Puerta: this connection cannot track keys"));
    };
    // This command's own number: its invalidations come after its OK.
    let at = state.order.queued() + 1;
    let new = NewTracker {
        entry: state.client.clone(),
        inbox,
        redirect,
        mode: mode.clone(),
    };
    if let Some(start) = cluster.tracking.enable(new, at) {
        tokio::spawn(feed::run(cluster.clone(), start));
    }
    state.tracking = Some(mode);
    let cluster = cluster.clone();
    let id = state.id;
    let within = cluster.config.connection_timeout + Duration::from_secs(1);
    later(async move {
        match feed::ready(&cluster, within).await {
            Ok(()) => wire::ok(),
            Err(e) => {
                // Left on, a cache would never hear of some writes.
                cluster.tracking.disable(id);
                e
            }
        }
    })
}

/// Tracking ends for this client (OFF, RESET, disconnect).
pub fn stop(cluster: &Cluster, state: &mut ClientState) {
    if state.tracking.take().is_some() {
        cluster.tracking.disable(state.id);
    }
    state.caching = None;
}

/// `CLIENT CACHING YES|NO`: whether the next command's reads are remembered.
pub fn caching(state: &mut ClientState, answer: &[u8]) -> Frame {
    let yes = match answer.to_ascii_uppercase().as_slice() {
        b"YES" => true,
        b"NO" => false,
        _ => return wire::error("ERR syntax error"),
    };
    let Some(mode) = &state.tracking else {
        return wire::error("ERR CLIENT CACHING can be called only when the client is in tracking mode with OPTIN or OPTOUT mode enabled");
    };
    match (yes, mode.optin, mode.optout) {
        (true, true, _) | (false, _, true) => {
            state.caching = Some(yes);
            wire::ok()
        }
        (true, false, _) => wire::error(
            "ERR CLIENT CACHING YES is only valid when tracking is enabled in OPTIN mode.",
        ),
        (false, _, false) => wire::error(
            "ERR CLIENT CACHING NO is only valid when tracking is enabled in OPTOUT mode.",
        ),
    }
}

/// `CLIENT GETREDIR`: -1 when not tracking, 0 when tracking on this connection, else the id
/// invalidations are redirected to.
pub fn getredir(state: &ClientState) -> Frame {
    Frame::Integer(match &state.tracking {
        None => -1,
        Some(mode) => mode.redirect.map_or(0, |id| id as i64),
    })
}

pub fn trackinginfo(state: &ClientState) -> Frame {
    match &state.tracking {
        Some(mode) => mode.info(state.caching),
        None => options::info_off(),
    }
}
