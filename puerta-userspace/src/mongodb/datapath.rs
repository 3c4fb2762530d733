//! The parts of MongoDB mode that depend on the data path: how flows forward, and who mirrors the
//! affinity table. The kernel path plugs in here and nowhere else.

use std::sync::Arc;

use crate::affinity::{AffinityMirror, NoMirror};
use crate::config::MongoConfig;
use crate::forward::{ForwardError, Forwarder};
use crate::kernel::{KernelAffinityMirror, KernelPath};

pub struct DataPath {
    pub forwarder: Forwarder,
    pub affinity_mirror: Arc<dyn AffinityMirror>,
}

pub fn data_path(config: &MongoConfig) -> Result<DataPath, ForwardError> {
    let forwarder = Forwarder::from_config(config)?;
    let affinity_mirror: Arc<dyn AffinityMirror> = match forwarder.kernel_path() {
        Some(kernel) => {
            describe_backends(kernel, config);
            Arc::new(KernelAffinityMirror::new(kernel.clone()))
        }
        None => Arc::new(NoMirror),
    };
    Ok(DataPath {
        forwarder,
        affinity_mirror,
    })
}

/// Fills the pinned backends map so bpftool can translate affinity entries' backend indices.
pub(super) fn describe_backends(kernel: &KernelPath, config: &MongoConfig) {
    for (index, endpoint) in config.endpoints.iter().enumerate() {
        let ip = endpoint.host.parse().ok();
        if let Err(e) = kernel.set_backend(index as u32, ip, endpoint.port, endpoint.weight) {
            tracing::warn!(
                backend = index,
                "cannot describe backend in the BPF map: {e}"
            );
        }
    }
}
