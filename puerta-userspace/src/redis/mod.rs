//! Redis mode: a RESP proxy in front of a Redis Cluster.

pub mod commands;
pub mod resp;
pub mod slots;

use crate::app::Serve;

#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    #[error("not implemented yet")]
    NotImplemented,
}

pub async fn serve(_serve: Serve) -> Result<(), RedisError> {
    Err(RedisError::NotImplemented)
}
