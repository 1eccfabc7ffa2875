//! The agent's Arrow Flight endpoint.
//!
//! - `ListFlights`: one `FlightInfo` per table, with its schema and row count.
//! - `GetFlightInfo` / `GetSchema` with a descriptor path `[table]`: that table.
//! - `DoGet` with a [`FragmentTicket`]: runs the fragment and streams its batches.
//!
//! Errors map to gRPC codes a coordinator can act on: a user's mistake (bad SQL, unknown
//! table or column) is `InvalidArgument`, a limit hit is `ResourceExhausted`, anything else
//! `Internal`.

use std::{pin::Pin, sync::Arc};

use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightInfo,
    HandshakeRequest, HandshakeResponse, PollInfo, PutResult, SchemaAsIpc, SchemaResult, Ticket,
    encode::FlightDataEncoderBuilder,
    error::FlightError,
    flight_service_server::{FlightService, FlightServiceServer},
};
use datafusion::{arrow::ipc::writer::IpcWriteOptions, error::DataFusionError};
use futures::{Stream, StreamExt, TryStreamExt, stream};
use kindling_wire::{FragmentTicket, auth, schema};
use tonic::{
    Request, Response, Status, Streaming,
    service::{Interceptor, interceptor::InterceptedService},
};

use crate::query::{LocalQueries, timeout_error};

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// The Flight service of one agent.
#[derive(Debug, Clone)]
pub struct AgentFlightService {
    queries: LocalQueries,
}

impl AgentFlightService {
    /// A service answering from `queries`.
    pub fn new(queries: LocalQueries) -> Self {
        Self { queries }
    }

    /// The tonic server for this service, with message limits sized for large batches; with
    /// `token`, every call must present it (`authorization: Bearer TOKEN`) or is refused
    /// with `Unauthenticated`.
    pub fn into_server(
        self,
        token: Option<String>,
    ) -> InterceptedService<FlightServiceServer<Self>, TokenCheck> {
        let server = FlightServiceServer::new(self)
            .max_decoding_message_size(16 << 20)
            .max_encoding_message_size(64 << 20);
        InterceptedService::new(
            server,
            TokenCheck {
                expected: token.map(Arc::from),
            },
        )
    }

    fn flight_info(&self, table: &str) -> Result<FlightInfo, Status> {
        let schema = schema::by_name(table).ok_or_else(|| unknown_table(table))?;
        let rows = self
            .queries
            .store()
            .stats()
            .get(table)
            .map_or(-1, |s| s.rows_held as i64);
        FlightInfo::new()
            .try_with_schema(&schema)
            .map_err(|e| Status::internal(e.to_string()))
            .map(|info| {
                info.with_descriptor(FlightDescriptor::new_path(vec![table.to_owned()]))
                    .with_total_records(rows)
            })
    }
}

/// Refuses calls that do not present the agent's token (when it has one).
#[derive(Debug, Clone)]
pub struct TokenCheck {
    expected: Option<Arc<str>>,
}

impl Interceptor for TokenCheck {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let Some(expected) = &self.expected else {
            return Ok(request);
        };
        let presented = request
            .metadata()
            .get(auth::HEADER)
            .map(tonic::metadata::MetadataValue::as_bytes);
        if auth::accepts(expected, presented) {
            Ok(request)
        } else if presented.is_none() {
            Err(Status::unauthenticated(
                "this agent requires a bearer token",
            ))
        } else {
            Err(Status::unauthenticated("wrong bearer token"))
        }
    }
}

fn unknown_table(table: &str) -> Status {
    Status::not_found(format!(
        "no table named {table}; tables: {}",
        schema::TABLES.join(", ")
    ))
}

fn table_of(descriptor: &FlightDescriptor) -> Result<&str, Status> {
    match descriptor.path.as_slice() {
        [table] => Ok(table),
        _ => Err(Status::invalid_argument(
            "descriptor must be a path of one element: the table name",
        )),
    }
}

/// A DataFusion error as the gRPC status a coordinator should see.
pub fn status_of(e: &DataFusionError) -> Status {
    match e.find_root() {
        DataFusionError::Plan(_)
        | DataFusionError::SQL(..)
        | DataFusionError::SchemaError(..)
        | DataFusionError::NotImplemented(_) => Status::invalid_argument(e.to_string()),
        DataFusionError::ResourcesExhausted(_) => Status::resource_exhausted(e.to_string()),
        _ => Status::internal(e.to_string()),
    }
}

/// Ends `batches` with the `on_timeout` error if it has not finished by `deadline`.
fn with_deadline(
    batches: datafusion::execution::SendableRecordBatchStream,
    deadline: tokio::time::Instant,
    on_timeout: impl Fn() -> Status + Send + Sync + 'static,
) -> impl Stream<Item = Result<datafusion::arrow::record_batch::RecordBatch, Status>> + Send {
    let sleep = Box::pin(tokio::time::sleep_until(deadline));
    let on_timeout = Arc::new(on_timeout);
    stream::unfold(Some((batches, sleep)), move |state| {
        let on_timeout = Arc::clone(&on_timeout);
        async move {
            let (mut batches, mut sleep) = state?;
            tokio::select! {
                item = batches.next() => {
                    item.map(|r| (r.map_err(|e| status_of(&e)), Some((batches, sleep))))
                }
                () = &mut sleep => Some((Err(on_timeout()), None)),
            }
        }
    })
}

#[tonic::async_trait]
impl FlightService for AgentFlightService {
    type HandshakeStream = BoxStream<HandshakeResponse>;
    type ListFlightsStream = BoxStream<FlightInfo>;
    type DoGetStream = BoxStream<FlightData>;
    type DoPutStream = BoxStream<PutResult>;
    type DoExchangeStream = BoxStream<FlightData>;
    type DoActionStream = BoxStream<arrow_flight::Result>;
    type ListActionsStream = BoxStream<ActionType>;

    async fn handshake(
        &self,
        _request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        Err(Status::unimplemented("no handshake needed"))
    }

    async fn list_flights(
        &self,
        _request: Request<Criteria>,
    ) -> Result<Response<Self::ListFlightsStream>, Status> {
        let infos: Vec<Result<FlightInfo, Status>> =
            schema::TABLES.iter().map(|t| self.flight_info(t)).collect();
        Ok(Response::new(Box::pin(stream::iter(infos))))
    }

    async fn get_flight_info(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let table = table_of(request.get_ref())?;
        self.flight_info(table).map(Response::new)
    }

    async fn poll_flight_info(
        &self,
        _request: Request<FlightDescriptor>,
    ) -> Result<Response<PollInfo>, Status> {
        Err(Status::unimplemented(
            "queries are not long-running: use DoGet",
        ))
    }

    async fn get_schema(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<SchemaResult>, Status> {
        let table = table_of(request.get_ref())?;
        let schema = schema::by_name(table).ok_or_else(|| unknown_table(table))?;
        let result: SchemaResult = SchemaAsIpc::new(&schema, &IpcWriteOptions::default())
            .try_into()
            .map_err(|e: datafusion::arrow::error::ArrowError| Status::internal(e.to_string()))?;
        Ok(Response::new(result))
    }

    async fn do_get(
        &self,
        request: Request<Ticket>,
    ) -> Result<Response<Self::DoGetStream>, Status> {
        let ticket = FragmentTicket::decode(&request.get_ref().ticket)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        tracing::debug!(sql = %ticket.sql, "Fragment");
        let limits = self.queries.limits();
        let batches = self
            .queries
            .execute(&ticket.sql)
            .await
            .map_err(|e| status_of(&e))?;
        let schema = batches.schema();
        let deadline = tokio::time::Instant::now() + limits.timeout;
        let batches = with_deadline(batches, deadline, move || {
            status_of(&timeout_error(limits.timeout))
        })
        .map_err(|status| FlightError::Tonic(Box::new(status)));
        let flight = FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .build(batches)
            .map_err(|e| match e {
                FlightError::Tonic(status) => *status,
                other => Status::internal(other.to_string()),
            });
        Ok(Response::new(Box::pin(flight)))
    }

    async fn do_put(
        &self,
        _request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoPutStream>, Status> {
        Err(Status::permission_denied("agents are read-only"))
    }

    async fn do_exchange(
        &self,
        _request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        Err(Status::unimplemented("use DoGet"))
    }

    async fn do_action(
        &self,
        _request: Request<Action>,
    ) -> Result<Response<Self::DoActionStream>, Status> {
        Err(Status::unimplemented("no actions"))
    }

    async fn list_actions(
        &self,
        _request: Request<Empty>,
    ) -> Result<Response<Self::ListActionsStream>, Status> {
        Ok(Response::new(Box::pin(stream::empty())))
    }
}
