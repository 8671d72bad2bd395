//! The `occoder.v1.BulkCoder` service: streaming and asynchronous bulk
//! coding for partner clients.
//!
//! The auth layer already limits these methods to partner clients. Each
//! handler checks the role again, so a wrong layer path cannot open them to
//! public clients. Records are validated with the bulk limit (3 to 300
//! characters in both fields together, printable ASCII), and a bad record
//! gets an error in its own response. Logs carry ids and counts, never
//! occupation text.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use futures::{FutureExt, Stream, StreamExt};
use occoder_auth::{OperationClass, Principal};
use occoder_classification::TopicId;
use occoder_model::bulk::{self, AsynchronousCodeResponse, EchoedInput};
use occoder_model::{Model, Scratch};
use occoder_operations::{OperationError, OperationStore, Upload};
use occoder_text::{LengthLimit, Record, validate};
use rayon::prelude::*;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::coder::model_message;
use super::errors::ApiError;
use super::operations::{metadata_message, operation_error_status, response_message, status_message};
use super::request_id::RequestId;
use super::state::ServerState;
use crate::proto::v1 as pb;
use crate::proto::v1::bulk_coder_server::BulkCoder;

/// Maximum output lines in one DownloadOperationOutput message.
const DOWNLOAD_LINES_PER_MESSAGE: usize = 1024;
/// Maximum bytes of output lines in one DownloadOperationOutput message,
/// unless a single line is longer, or `limits.max_response_bytes` less
/// [`DOWNLOAD_HEADROOM_BYTES`] when that is smaller.
const DOWNLOAD_BYTES_PER_MESSAGE: usize = 1 << 20;
/// Bytes of a DownloadOperationOutput message kept free for its metadata,
/// which has ids, counts, times and the model's description.
const DOWNLOAD_HEADROOM_BYTES: usize = 4096;
/// Upper bound of the protobuf bytes that frame one line in a message: a
/// one-byte tag and a length of up to 10 bytes.
const LINE_FRAMING_BYTES: usize = 11;

pub struct BulkCoderService {
    state: Arc<ServerState>,
}

impl BulkCoderService {
    pub fn new(state: Arc<ServerState>) -> BulkCoderService {
        BulkCoderService { state }
    }
}

type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// Ids of a call for logs and error details.
#[derive(Clone)]
struct CallIds {
    request_id: String,
    client_id: String,
    method: &'static str,
}

impl CallIds {
    /// Reads the call's ids and checks that its client may call bulk methods.
    fn authorize<T>(request: &Request<T>, method: &'static str) -> Result<CallIds, Status> {
        let request_id = RequestId::of(request);
        let Some(principal) = request.extensions().get::<Principal>() else {
            tracing::error!(%request_id, method, "bulk call without a verified client; check the auth layer");
            return Err(Status::unauthenticated(occoder_auth::DENY_MESSAGE));
        };
        if let Err(error) = principal.require(OperationClass::Bulk) {
            tracing::debug!(%request_id, client_id = %principal.client_id, method, "bulk call from a client without the partner role");
            return Err(error.to_status());
        }
        Ok(CallIds { request_id, client_id: principal.client_id.clone(), method })
    }

    fn api_error(&self, error: ApiError) -> Status {
        if let ApiError::Internal { context } = &error {
            tracing::error!(request_id = %self.request_id, client_id = %self.client_id, method = self.method, %context, "internal error");
        } else {
            tracing::debug!(request_id = %self.request_id, client_id = %self.client_id, method = self.method, reason = error.reason(), "request rejected");
        }
        error.to_status(&self.request_id)
    }

    fn store_error(&self, error: &OperationError) -> Status {
        operation_error_status(error, &self.request_id, &self.client_id, self.method)
    }

    fn invalid(&self, detail: impl Into<String>, field: &str) -> Status {
        let detail = detail.into();
        self.api_error(ApiError::InvalidRequestBody {
            violations: vec![super::errors::Violation::new(field, detail.clone())],
            detail,
        })
    }
}

fn parse_topic(topic: &str) -> Result<TopicId, ApiError> {
    topic.parse().map_err(|_| ApiError::TopicNotFound { topic: topic.to_owned() })
}

#[tonic::async_trait]
impl BulkCoder for BulkCoderService {
    type CodeStreamStream = ResponseStream<pb::AsynchronousCodeResponse>;
    type DownloadOperationOutputStream = ResponseStream<pb::DownloadOperationOutputResponse>;

    async fn code_stream(
        &self,
        request: Request<Streaming<pb::CodeStreamRequest>>,
    ) -> Result<Response<Self::CodeStreamStream>, Status> {
        let ids = CallIds::authorize(&request, "CodeStream")?;
        let mut inbound = request.into_inner();

        let setup = match inbound.message().await? {
            Some(pb::CodeStreamRequest { message: Some(pb::code_stream_request::Message::Setup(setup)) }) => setup,
            Some(_) => return Err(ids.invalid("the first CodeStreamRequest must carry `setup` (topic and model)", "setup")),
            None => return Err(ids.invalid("the stream ended before its `setup` message", "setup")),
        };
        let topic = parse_topic(&setup.topic).map_err(|error| ids.api_error(error))?;
        let model = self
            .state
            .models()
            .and_then(|models| Ok(Arc::clone(models.select(topic, setup.model_id.as_deref())?)))
            .map_err(|error| ids.api_error(error))?;
        let pool = self.state.bulk.pool().ok_or_else(|| ids.api_error(ApiError::ModelsLoading))?;

        let limits = &self.state.config.bulk;
        let chunk_records = limits.stream_chunk_records;
        let max_in_flight = limits.stream_max_in_flight_records;
        let (output, responses) = mpsc::channel(chunk_records.max(16));
        tracing::info!(
            request_id = %ids.request_id,
            client_id = %ids.client_id,
            model_id = %model.metadata().model_id,
            "code stream started"
        );
        let settings = CodeStreamSettings { model, pool, chunk_records, max_in_flight, request_id: ids.request_id.clone() };
        tokio::spawn(run_code_stream(inbound, settings, output, ids));
        Ok(Response::new(Box::pin(ReceiverStream::new(responses))))
    }

    async fn create_operation(&self, request: Request<pb::CreateOperationRequest>) -> Result<Response<pb::OperationStatus>, Status> {
        let ids = CallIds::authorize(&request, "CreateOperation")?;
        let request = request.into_inner();
        let topic = parse_topic(&request.topic).map_err(|error| ids.api_error(error))?;
        let model_id = self
            .state
            .models()
            .and_then(|models| Ok(models.select(topic, request.model_id.as_deref())?.metadata().model_id.to_string()))
            .map_err(|error| ids.api_error(error))?;
        let client_id = ids.client_id.clone();
        let status = self.call_store(&ids, move |store| store.create(&client_id, topic.uri_name(), &model_id)).await?;
        Ok(Response::new(status_message(status)))
    }

    async fn upload_operation_input(
        &self,
        request: Request<Streaming<pb::UploadOperationInputRequest>>,
    ) -> Result<Response<pb::OperationStatus>, Status> {
        let ids = CallIds::authorize(&request, "UploadOperationInput")?;
        let mut inbound = request.into_inner();
        let Some(first) = inbound.message().await? else {
            return Err(ids.invalid("the upload stream ended before its first message", "operation_id"));
        };
        if first.operation_id.trim().is_empty() {
            return Err(ids.invalid("the first UploadOperationInputRequest must carry operation_id", "operation_id"));
        }
        let topic = parse_topic(&first.topic).map_err(|error| ids.api_error(error))?;
        let (client_id, operation_id) = (ids.client_id.clone(), first.operation_id.clone());
        let upload = self.call_store(&ids, move |store| store.begin_upload(&client_id, topic.uri_name(), &operation_id)).await?;

        let status = receive_upload(upload, first, &mut inbound, &ids).await?;
        Ok(Response::new(status_message(status)))
    }

    async fn get_operation(&self, request: Request<pb::GetOperationRequest>) -> Result<Response<pb::OperationStatus>, Status> {
        let ids = CallIds::authorize(&request, "GetOperation")?;
        let request = request.into_inner();
        let topic = parse_topic(&request.topic).map_err(|error| ids.api_error(error))?;
        let client_id = ids.client_id.clone();
        let status =
            self.call_store(&ids, move |store| store.status(&client_id, topic.uri_name(), &request.operation_id)).await?;
        Ok(Response::new(status_message(status)))
    }

    async fn download_operation_output(
        &self,
        request: Request<pb::DownloadOperationOutputRequest>,
    ) -> Result<Response<Self::DownloadOperationOutputStream>, Status> {
        let ids = CallIds::authorize(&request, "DownloadOperationOutput")?;
        let request = request.into_inner();
        let (topic, download) = self.open_download(&ids, &request.topic, request.operation_id).await?;

        let model = self.model_of(topic, &download.metadata.model_id);
        let metadata = metadata_message(download.metadata, model);
        let lines = download.lines.into_channel(DOWNLOAD_LINES_PER_MESSAGE * 2);
        let (output, messages) = mpsc::channel(4);
        let byte_budget = DOWNLOAD_BYTES_PER_MESSAGE
            .min(self.state.config.limits.max_response_bytes.saturating_sub(DOWNLOAD_HEADROOM_BYTES));
        tokio::spawn(send_download(metadata, lines, output, byte_budget, ids));
        Ok(Response::new(Box::pin(ReceiverStream::new(messages))))
    }

    async fn get_operation_metadata(
        &self,
        request: Request<pb::GetOperationMetadataRequest>,
    ) -> Result<Response<pb::OperationMetadata>, Status> {
        let ids = CallIds::authorize(&request, "GetOperationMetadata")?;
        let request = request.into_inner();
        let (topic, download) = self.open_download(&ids, &request.topic, request.operation_id).await?;
        let model = self.model_of(topic, &download.metadata.model_id);
        Ok(Response::new(metadata_message(download.metadata, model)))
    }
}

impl BulkCoderService {
    /// Runs a call of the operation store on a blocking thread, because
    /// store calls write and fsync state files. Returns UNAVAILABLE while
    /// the models load and after shutdown.
    async fn call_store<T: Send + 'static>(
        &self,
        ids: &CallIds,
        call: impl FnOnce(&OperationStore) -> Result<T, OperationError> + Send + 'static,
    ) -> Result<T, Status> {
        self.state.models().map_err(|error| ids.api_error(error))?;
        let store = self.state.bulk.store().ok_or_else(|| ids.store_error(&OperationError::ShuttingDown))?;
        tokio::task::spawn_blocking(move || call(&store))
            .await
            .map_err(|error| ids.api_error(ApiError::Internal { context: format!("operation store task failed: {error}") }))?
            .map_err(|error| ids.store_error(&error))
    }

    /// Opens the output of the caller's operation `operation_id` of `topic`,
    /// which both the download and the metadata calls read.
    async fn open_download(
        &self,
        ids: &CallIds,
        topic: &str,
        operation_id: String,
    ) -> Result<(TopicId, occoder_operations::Download), Status> {
        let topic = parse_topic(topic).map_err(|error| ids.api_error(error))?;
        let client_id = ids.client_id.clone();
        let download = self.call_store(ids, move |store| store.download(&client_id, topic.uri_name(), &operation_id)).await?;
        Ok((topic, download))
    }

    /// Describes the model `model_id` if it is still loaded.
    fn model_of(&self, topic: TopicId, model_id: &str) -> Option<pb::Model> {
        let models = self.state.models().ok()?;
        models.find(topic, model_id).ok().map(|model| model_message(model.metadata()))
    }
}

/// Writes the upload stream's chunks to `upload`, then makes the input
/// durable and queues the operation. An error, or the client going away,
/// drops the upload, which discards it and leaves the operation awaiting
/// input.
async fn receive_upload(
    mut upload: Upload,
    first: pb::UploadOperationInputRequest,
    inbound: &mut Streaming<pb::UploadOperationInputRequest>,
    ids: &CallIds,
) -> Result<occoder_operations::OperationStatus, Status> {
    let operation_id = first.operation_id.trim().to_owned();
    let topic = first.topic.clone();
    let mut message = Some(first);
    let mut chunks = 0u64;
    while let Some(next) = message.take() {
        let same_operation = next.operation_id.trim().is_empty() || next.operation_id.trim() == operation_id;
        let same_topic = next.topic.is_empty() || next.topic == topic;
        if !same_operation || !same_topic {
            return Err(ids.invalid(
                format!("message {} of the upload names another operation or topic; send one operation per upload", chunks + 1),
                "operation_id",
            ));
        }
        if !next.data.is_empty() {
            let data = next.data;
            let (returned, result) = tokio::task::spawn_blocking(move || {
                let result = upload.write_chunk(&data);
                (upload, result)
            })
            .await
            .map_err(|error| ids.api_error(ApiError::Internal { context: format!("upload task failed: {error}") }))?;
            upload = returned;
            result.map_err(|error| ids.store_error(&error))?;
        }
        chunks += 1;
        message = match inbound.message().await {
            Ok(message) => message,
            Err(status) => {
                tracing::info!(
                    request_id = %ids.request_id,
                    client_id = %ids.client_id,
                    %operation_id,
                    code = ?status.code(),
                    "upload stream failed; the upload was discarded"
                );
                return Err(status);
            }
        };
    }

    // tonic (0.14) ends a request stream without an error when the client
    // resets it with CANCEL, which a cancelled call or an expired deadline
    // sends, so the end of the stream may be a cancellation. hyper (1.13)
    // checks for a reset each time the call's future is pending and then
    // drops the future, which drops the upload and discards it. Yielding
    // once gives hyper that check before the input is committed.
    tokio::task::yield_now().await;
    tokio::task::spawn_blocking(move || upload.finish())
        .await
        .map_err(|error| ids.api_error(ApiError::Internal { context: format!("upload task failed: {error}") }))?
        .map_err(|error| ids.store_error(&error))
}

/// Sends the metadata, then the output lines in messages of at most
/// [`DOWNLOAD_LINES_PER_MESSAGE`] lines and `byte_budget` bytes of lines,
/// unless a single line is longer. Stops when the client goes away.
async fn send_download(
    metadata: pb::OperationMetadata,
    mut lines: mpsc::Receiver<Result<String, OperationError>>,
    output: mpsc::Sender<Result<pb::DownloadOperationOutputResponse, Status>>,
    byte_budget: usize,
    ids: CallIds,
) {
    let operation_id = metadata.operation_id.clone();
    let expected = metadata.input_lines;
    let mut message = pb::DownloadOperationOutputResponse { lines: Vec::new(), metadata: Some(metadata) };
    let mut message_bytes = 0usize;
    let mut sent = 0u64;
    loop {
        let next = lines.recv().await;
        let full = match &next {
            Some(Ok(line)) => {
                let over_budget = !message.lines.is_empty() && message_bytes + line.len() + LINE_FRAMING_BYTES > byte_budget;
                message.lines.len() >= DOWNLOAD_LINES_PER_MESSAGE || over_budget
            }
            _ => true,
        };
        if full && (!message.lines.is_empty() || message.metadata.is_some()) {
            let count = message.lines.len() as u64;
            let ready = std::mem::take(&mut message);
            message_bytes = 0;
            if output.send(Ok(ready)).await.is_err() {
                tracing::info!(request_id = %ids.request_id, client_id = %ids.client_id, %operation_id, lines = sent, "download cancelled by the client");
                return;
            }
            sent += count;
        }
        match next {
            Some(Ok(line)) => {
                message_bytes += line.len() + LINE_FRAMING_BYTES;
                message.lines.push(line);
            }
            Some(Err(error)) => {
                let _ = output.send(Err(ids.store_error(&error))).await;
                return;
            }
            None => break,
        }
    }
    tracing::info!(request_id = %ids.request_id, client_id = %ids.client_id, %operation_id, lines = sent, expected, "download finished");
}

/// The model, pool and read-ahead limits of one CodeStream, and its request
/// id for the details of its errors.
struct CodeStreamSettings {
    model: Arc<Model>,
    pool: Arc<rayon::ThreadPool>,
    chunk_records: usize,
    max_in_flight: usize,
    request_id: String,
}

/// One step of a CodeStream, in input order: a coded chunk, or an error
/// that ends the stream after the chunks before it.
enum StreamItem {
    Chunk { responses: oneshot::Receiver<Vec<pb::AsynchronousCodeResponse>>, permit: OwnedSemaphorePermit },
    Fail(Status),
}

/// Counts of one CodeStream, for its stop log.
#[derive(Default)]
struct StreamCounts {
    records: u64,
    errors: u64,
}

/// Runs one CodeStream: a reader task reads records into chunks and hands
/// each chunk to the bulk pool, and this task sends the coded chunks on in
/// input order.
///
/// A semaphore with `max_in_flight` permits, one per record, bounds the
/// records read and not yet passed to `output`. When it is exhausted, the
/// reader stops reading, and HTTP/2 flow control then blocks the client.
/// When the client goes away, `output` closes: the reader stops, queued
/// chunks are dropped, and pool tasks whose chunk was dropped skip coding.
async fn run_code_stream(
    inbound: Streaming<pb::CodeStreamRequest>,
    settings: CodeStreamSettings,
    output: mpsc::Sender<Result<pb::AsynchronousCodeResponse, Status>>,
    ids: CallIds,
) {
    let started = Instant::now();
    let permits = Arc::new(Semaphore::new(settings.max_in_flight));
    let chunk_capacity = settings.max_in_flight / settings.chunk_records + 1;
    let (items, mut queue) = mpsc::channel(chunk_capacity);
    let reader = tokio::spawn(read_code_stream(inbound, settings, permits, items, output.clone()));

    let mut counts = StreamCounts::default();
    let mut cancelled = false;
    'items: while let Some(item) = queue.recv().await {
        match item {
            StreamItem::Chunk { responses, permit } => {
                let Ok(responses) = responses.await else {
                    // The pool task ended without sending, which happens
                    // only when it panicked.
                    let status = ApiError::Internal { context: String::new() }.to_status(&ids.request_id);
                    let _ = output.send(Err(status)).await;
                    tracing::error!(request_id = %ids.request_id, client_id = %ids.client_id, "coding a stream chunk failed");
                    break;
                };
                for response in responses {
                    counts.records += 1;
                    counts.errors += u64::from(response.error.is_some());
                    if output.send(Ok(response)).await.is_err() {
                        cancelled = true;
                        break 'items;
                    }
                }
                drop(permit);
            }
            StreamItem::Fail(status) => {
                tracing::info!(request_id = %ids.request_id, client_id = %ids.client_id, code = ?status.code(), "code stream ended with an error");
                let _ = output.send(Err(status)).await;
                break;
            }
        }
    }
    drop(queue);
    reader.abort();
    tracing::info!(
        request_id = %ids.request_id,
        client_id = %ids.client_id,
        records = counts.records,
        error_records = counts.errors,
        cancelled,
        millis = started.elapsed().as_millis() as u64,
        "code stream stopped"
    );
}

/// Reads records into chunks of up to `chunk_records`, submits each chunk
/// to the pool, and queues its result receiver in input order. A chunk is
/// submitted early when no further record has arrived yet, so a client that
/// sends one record and waits gets its response.
async fn read_code_stream(
    mut inbound: Streaming<pb::CodeStreamRequest>,
    settings: CodeStreamSettings,
    permits: Arc<Semaphore>,
    items: mpsc::Sender<StreamItem>,
    output: mpsc::Sender<Result<pb::AsynchronousCodeResponse, Status>>,
) {
    let mut message_number = 1u64;
    loop {
        let permit = tokio::select! {
            // Configuration checks keep chunk_records at most 1,000,000.
            permit = Arc::clone(&permits).acquire_many_owned(settings.chunk_records as u32) => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
            () = output.closed() => return,
        };

        let mut chunk = Vec::with_capacity(settings.chunk_records);
        let mut failure = None;
        let mut ended = false;
        while chunk.len() < settings.chunk_records {
            let next = if chunk.is_empty() {
                tokio::select! {
                    next = inbound.next() => next,
                    () = output.closed() => return,
                }
            } else {
                match inbound.next().now_or_never() {
                    Some(next) => next,
                    None => break,
                }
            };
            message_number += 1;
            match next {
                Some(Ok(pb::CodeStreamRequest { message: Some(pb::code_stream_request::Message::Record(record)) })) => {
                    chunk.push(record);
                }
                Some(Ok(_)) => {
                    let detail = format!(
                        "message {message_number} of the stream carries no `record`; only the first message carries `setup`"
                    );
                    let error = ApiError::InvalidRequestBody { violations: vec![super::errors::Violation::new("record", detail.clone())], detail };
                    failure = Some(error.to_status(&settings.request_id));
                    break;
                }
                Some(Err(status)) => {
                    failure = Some(status);
                    break;
                }
                None => {
                    ended = true;
                    break;
                }
            }
        }

        if !chunk.is_empty() {
            let (sender, receiver) = oneshot::channel();
            let model = Arc::clone(&settings.model);
            settings.pool.spawn(move || {
                // The chunk's receiver is gone when the client went away.
                if !sender.is_closed() {
                    let _ = sender.send(code_records(&model, chunk));
                }
            });
            if items.send(StreamItem::Chunk { responses: receiver, permit }).await.is_err() {
                return;
            }
        }
        if let Some(status) = failure {
            let _ = items.send(StreamItem::Fail(status)).await;
            return;
        }
        if ended {
            return;
        }
    }
}

/// Codes streamed records on the current rayon pool, as the offline
/// command codes the same records given as JSON lines.
fn code_records(model: &Model, records: Vec<pb::Record>) -> Vec<pb::AsynchronousCodeResponse> {
    records
        .into_par_iter()
        .map_init(Scratch::default, |scratch, record| {
            let text = Record::new(record.occp_text, record.tasks_text);
            let parsed = match validate(&text, LengthLimit::Bulk) {
                Ok(()) => Ok((record.record_id, text)),
                Err(error) => Err(AsynchronousCodeResponse::failed(
                    record.record_id,
                    EchoedInput::Fields { occp_text: Some(text.occp_text), tasks_text: Some(text.tasks_text) },
                    error.to_string(),
                )),
            };
            response_message(bulk::respond(model, parsed, scratch))
        })
        .collect()
}
