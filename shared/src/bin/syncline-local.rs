//! Local operations for syncline.
//!
//! `syncline-local [serve]` serves one embedded store for every local
//! function process: processes must not each open the database file (each
//! would cache its own table definitions), so they all point
//! `AWS_ENDPOINT_URL_DYNAMODB` here.
//!
//! `syncline-local dead-letters` lists the retry queue's dead letters and
//! `syncline-local redrive [MESSAGE_ID...]` moves them (all, or the named
//! ones) back onto the retry queue. Both use the configuration in the
//! environment, like the functions do.

use std::process::ExitCode;
use std::time::Duration;

use syncline::config::{Config, DEFAULT_TABLE, LocalStoreConfig};
use syncline::embedded::{EmbeddedEngine, Storage};
use syncline::ingest::{SourceSet, register_sync_work};
use syncline::lambda::sqs::poll_once;
use syncline::queue::MessageId;
use syncline::retry::RetryEnvelope;
use syncline::retry::RetryWorker;
use syncline::runtime::Adapters;
use syncline::store::Store;

const USAGE: &str =
    "usage: syncline-local [serve | demo-source | drain | dead-letters | redrive [MESSAGE_ID...]]";

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        None | Some("serve") => serve().await,
        Some("demo-source") => demo_source().await,
        Some("drain") => drain().await,
        Some("dead-letters") => dead_letters().await,
        Some("redrive") => redrive(&args[1..]).await,
        Some(_) => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("syncline-local: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn serve() -> syncline::Result<()> {
    let config = LocalStoreConfig::from_env()?;
    let path = config.data_dir.join("store.db");
    let engine = EmbeddedEngine::start(Storage::File(path.clone()), config.addr).await?;
    Store::from_sdk_config(&engine.sdk_config().await, DEFAULT_TABLE)
        .ensure_table()
        .await?;
    println!(
        "syncline store on {} (data in {})",
        engine.endpoint(),
        path.display()
    );
    println!("point local functions at it with:");
    println!(
        "  export SYNCLINE_TABLE={DEFAULT_TABLE} AWS_ENDPOINT_URL_DYNAMODB={} AWS_REGION=us-east-1 \
         AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local",
        engine.endpoint()
    );
    tokio::signal::ctrl_c()
        .await
        .map_err(|e| syncline::Error::internal(format!("waiting for Ctrl-C: {e}")))?;
    engine.stop().await;
    Ok(())
}

async fn demo_source() -> syncline::Result<()> {
    let (addr, count) = syncline::config::demo_source()?;
    let bound = syncline::demo::serve(addr, count).await?;
    println!("demo source: {count} properties at http://{bound}/properties");
    tokio::signal::ctrl_c()
        .await
        .map_err(|e| syncline::Error::internal(format!("waiting for Ctrl-C: {e}")))
}

/// Feeds the retry queue to a retry worker until it is empty, the way
/// Lambda's SQS event source does in AWS (continuations included).
async fn drain() -> syncline::Result<()> {
    let config = Config::from_env()?;
    let adapters = Adapters::from_config(&config).await?;
    let mut worker = RetryWorker::new(adapters.store.clone(), adapters.queue.clone(), config.retry);
    if let Some(document) = syncline::config::optional_document("SYNCLINE_SOURCES")? {
        let sources = SourceSet::load(&document)?;
        register_sync_work(&mut worker, adapters.sync_engine(sources));
    }
    let mut handled = 0;
    loop {
        let batch = poll_once(
            &*adapters.queue,
            &worker,
            Duration::from_secs(900),
            Duration::from_secs(900),
            Duration::from_secs(1),
        )
        .await?;
        if batch == 0 {
            break;
        }
        handled += batch;
    }
    println!("handled {handled} message(s); the queue is empty");
    Ok(())
}

async fn adapters() -> syncline::Result<Adapters> {
    Adapters::from_config(&Config::from_env()?).await
}

async fn dead_letters() -> syncline::Result<()> {
    let adapters = adapters().await?;
    for letter in adapters.queue.dead_letters(1000).await? {
        match RetryEnvelope::parse(&letter.body) {
            Ok(envelope) => println!(
                "{}\t{}\t{}\tattempts={}\t{}",
                letter.id,
                envelope.kind,
                envelope.idempotency_key,
                envelope.attempt,
                envelope.last_error.unwrap_or_default()
            ),
            Err(_) => println!("{}\t(unreadable)\t{}", letter.id, letter.body),
        }
    }
    Ok(())
}

async fn redrive(ids: &[String]) -> syncline::Result<()> {
    let adapters = adapters().await?;
    let ids: Vec<MessageId> = ids.iter().map(MessageId::new).collect();
    let moved = adapters
        .queue
        .redrive((!ids.is_empty()).then_some(ids.as_slice()))
        .await?;
    println!("moved {moved} message(s) back onto the retry queue");
    Ok(())
}
