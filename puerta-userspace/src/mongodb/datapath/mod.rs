//! The parts of MongoDB mode that depend on the data path: how flows forward (`forward`: kernel
//! sockmap, splice, userspace; `kernel`: the eBPF program and its maps; `proxy_protocol`: the
//! header a mongos may want first), and who mirrors the affinity table. The kernel path plugs in
//! here and nowhere else.

pub mod forward;
pub mod kernel;
pub mod proxy_protocol;

use std::sync::Arc;

use crate::config::MongoConfig;
use crate::mongodb::datapath::forward::{ForwardError, Forwarder};
use crate::mongodb::datapath::kernel::{KernelAffinityMirror, KernelHealthMirror};
use crate::mongodb::placement::affinity::{AffinityMirror, NoMirror};
use crate::mongodb::placement::backends::{Backends, HealthMirror};

pub struct DataPath {
    pub forwarder: Forwarder,
    pub affinity_mirror: Arc<dyn AffinityMirror>,
    /// `None` when nothing outside the process shows backend health.
    pub health_mirror: Option<Arc<dyn HealthMirror>>,
}

pub fn data_path(config: &MongoConfig) -> Result<DataPath, ForwardError> {
    let forwarder = Forwarder::from_config(config)?;
    let (affinity_mirror, health_mirror): (Arc<dyn AffinityMirror>, Option<Arc<dyn HealthMirror>>) =
        match forwarder.kernel_path() {
            Some(kernel) => (
                Arc::new(KernelAffinityMirror::new(kernel.clone())),
                Some(Arc::new(KernelHealthMirror::new(kernel.clone()))),
            ),
            None => (Arc::new(NoMirror), None),
        };
    Ok(DataPath {
        forwarder,
        affinity_mirror,
        health_mirror,
    })
}

/// `backends`, shown through `mirror` if there is one.
pub fn mirrored(backends: Backends, mirror: Option<&Arc<dyn HealthMirror>>) -> Backends {
    match mirror {
        Some(mirror) => backends.mirrored(mirror.clone()),
        None => backends,
    }
}
