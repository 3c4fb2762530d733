//! MongoDB mode: an L4 balancer in front of mongos routers.

use crate::app::Serve;

#[derive(Debug, thiserror::Error)]
pub enum MongoError {
    #[error("not implemented yet")]
    NotImplemented,
}

pub async fn serve(_serve: Serve) -> Result<(), MongoError> {
    Err(MongoError::NotImplemented)
}
