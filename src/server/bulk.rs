//! The `occoder.v1.BulkCoder` service: streaming and asynchronous bulk
//! coding for partner clients.
//!
//! TODO: every method returns UNIMPLEMENTED until the bulk service is built
//! on `occoder-operations` and `occoder_model::bulk`. The auth layer already
//! limits these methods to partner clients.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use tonic::{Request, Response, Status, Streaming};

use super::state::ServerState;
use crate::proto::v1 as pb;
use crate::proto::v1::bulk_coder_server::BulkCoder;

pub struct BulkCoderService {
    #[allow(dead_code)]
    state: Arc<ServerState>,
}

impl BulkCoderService {
    pub fn new(state: Arc<ServerState>) -> BulkCoderService {
        BulkCoderService { state }
    }
}

fn not_built(method: &str) -> Status {
    Status::unimplemented(format!(
        "BulkCoder.{method} is not available in this version of occoder; use Coder.Code for up to 300 records per call"
    ))
}

type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl BulkCoder for BulkCoderService {
    type CodeStreamStream = ResponseStream<pb::AsynchronousCodeResponse>;
    type DownloadOperationOutputStream = ResponseStream<pb::DownloadOperationOutputResponse>;

    async fn code_stream(
        &self,
        _request: Request<Streaming<pb::CodeStreamRequest>>,
    ) -> Result<Response<Self::CodeStreamStream>, Status> {
        Err(not_built("CodeStream"))
    }

    async fn create_operation(&self, _request: Request<pb::CreateOperationRequest>) -> Result<Response<pb::OperationStatus>, Status> {
        Err(not_built("CreateOperation"))
    }

    async fn upload_operation_input(
        &self,
        _request: Request<Streaming<pb::UploadOperationInputRequest>>,
    ) -> Result<Response<pb::OperationStatus>, Status> {
        Err(not_built("UploadOperationInput"))
    }

    async fn get_operation(&self, _request: Request<pb::GetOperationRequest>) -> Result<Response<pb::OperationStatus>, Status> {
        Err(not_built("GetOperation"))
    }

    async fn download_operation_output(
        &self,
        _request: Request<pb::DownloadOperationOutputRequest>,
    ) -> Result<Response<Self::DownloadOperationOutputStream>, Status> {
        Err(not_built("DownloadOperationOutput"))
    }

    async fn get_operation_metadata(
        &self,
        _request: Request<pb::GetOperationMetadataRequest>,
    ) -> Result<Response<pb::OperationMetadata>, Status> {
        Err(not_built("GetOperationMetadata"))
    }
}
