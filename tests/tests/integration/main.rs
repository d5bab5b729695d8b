//! syncline's integration tests: one binary, driving the public API of the
//! domain crate against the embedded engine and moto's SQS.

mod admin_api;
mod concurrency;
mod console_browser;
mod destinations;
mod discrepancy;
mod edges;
mod events_catalog;
mod infra_template;
mod local_runs;
mod local_service;
mod openapi;
mod proxy_costing;
mod queue_contract;
mod realtime;
mod realtime_lambda;
mod retry_worker;
mod scenario_orchestrator;
mod scenario_platform;
mod scenario_platform_outbound;
mod scenario_push_pull;
mod scenario_scheduled_puller;
mod scenario_sync_worker;
mod scenario_sync_worker_cache;
mod scheduled_sync;
mod store_contract;
mod store_faults;
mod store_shards;
mod sync_api;
mod sync_reads;
mod webhooks;
