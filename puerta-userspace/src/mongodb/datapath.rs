//! The parts of MongoDB mode that depend on the data path: how flows forward, and who mirrors the
//! affinity table. The kernel path plugs in here and nowhere else.

use std::sync::Arc;

use crate::affinity::{AffinityMirror, NoMirror};
use crate::config::MongoConfig;
use crate::forward::{ForwardError, Forwarder};

pub struct DataPath {
    pub forwarder: Forwarder,
    pub affinity_mirror: Arc<dyn AffinityMirror>,
}

pub fn data_path(config: &MongoConfig) -> Result<DataPath, ForwardError> {
    Ok(DataPath {
        forwarder: Forwarder::from_config(config)?,
        affinity_mirror: Arc::new(NoMirror),
    })
}
