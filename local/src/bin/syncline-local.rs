//! Local operations for syncline.
//!
//! `syncline-local up` runs the whole service in one process: the embedded
//! store, every function behind one HTTP port, the schedules emulated, the
//! retry queue drained, and a demo REST source. `syncline-local token`
//! prints a token for the local JWT secret; `syncline-local console`
//! prints a sign-in link to the operator console.
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
use syncline::lambda::sqs::poll_once;
use syncline::queue::MessageId;
use syncline::retry::RetryEnvelope;
use syncline::runtime::Adapters;
use syncline::store::Store;
use syncline::wiring::Wiring;
use syncline_local::embedded::{EmbeddedEngine, Storage};
use syncline_local::run::{
    Schedules, UpSettings, console_link, local_token, local_var, up as up_service,
};

/// mimalloc (version 3) in place of the system allocator: a local sync
/// spends about a quarter of its time allocating and freeing the engine's
/// and the SDK's small values, and this one does it faster for the same
/// peak memory (docs/SOURCES.md, "Throughput").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The environment variable of mimalloc's purge delay.
const PURGE_DELAY: &str = "MIMALLOC_PURGE_DELAY";

/// mimalloc 3 keeps the memory it has freed for a second before handing it
/// back (its purge delay), and a sync frees fast enough for that to raise
/// the peak by 20 MB (docs/SOURCES.md, "Throughput"). mimalloc reads its
/// options from the environment as the process starts, before `main`: so
/// without the option set, the process starts itself again with it set to
/// 0, handing memory back at once. (The same process id, and no thread has
/// started yet.)
fn purge_at_once() {
    use std::os::unix::process::CommandExt;
    if std::env::var_os(PURGE_DELAY).is_some() {
        return;
    }
    let Ok(binary) = std::env::current_exe() else {
        return;
    };
    let error = std::process::Command::new(binary)
        .args(std::env::args_os().skip(1))
        .env(PURGE_DELAY, "0")
        .exec();
    // `exec` returns only when it failed: go on as started.
    eprintln!("syncline-local: starting again with {PURGE_DELAY}=0 failed ({error})");
}

const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:8080";

const USAGE: &str = "usage: syncline-local [up | token [TENANT] [SCOPE] | console [TENANT] | serve | demo-source | drain | \
     dead-letters | redrive [MESSAGE_ID...]]";

fn main() -> ExitCode {
    purge_at_once();
    run()
}

#[tokio::main]
async fn run() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("up") => up().await,
        Some("token") => token(&args[1..]),
        Some("console") => console(&args[1..]),
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

fn print_line(line: &str) {
    println!("{line}");
}

async fn up() -> syncline::Result<()> {
    syncline::telemetry::init();
    syncline::metrics::silence();
    let var = local_var;
    let store = LocalStoreConfig::from_vars(var)?;
    let http_addr = var("SYNCLINE_LOCAL_HTTP_ADDR")
        .unwrap_or_else(|| DEFAULT_HTTP_ADDR.to_owned())
        .parse()
        .map_err(|_| syncline::Error::Config("SYNCLINE_LOCAL_HTTP_ADDR is not host:port".into()))?;
    let (demo_addr, demo_records) = syncline::config::demo_source()?;
    if demo_records > 0 {
        let counts = syncline_local::demo::DemoCounts {
            properties: demo_records,
            ..syncline_local::demo::DemoCounts::default()
        };
        let bound = syncline_local::demo::serve_demo(demo_addr, counts).await?;
        println!(
            "demo source: {} properties, {} Calendly events, {} Stripe payments, {} Zoho jobs at http://{bound}",
            counts.properties, counts.events, counts.payments, counts.jobs
        );
    }
    std::fs::create_dir_all(&store.data_dir).map_err(|e| {
        syncline::Error::Config(format!("creating {}: {e}", store.data_dir.display()))
    })?;
    let auth = syncline::config::auth_config_from(&var)?;
    let settings = UpSettings {
        storage: Storage::File(store.data_dir.join("store.db")),
        store_addr: store.addr,
        http_addr,
        auth: auth.clone(),
        retry: Config::from_vars(var)?.retry,
        schedules: Some(Schedules::from_vars(&var)?),
        queue: None,
        store_front: None,
    };
    let running = up_service(settings, &var, print_line).await?;
    println!(
        "store: {} (data in {})",
        running.store_endpoint,
        store.data_dir.display()
    );
    println!("syncline: http://{}", running.http);
    println!(
        "live: ws://{}/v1/sync/live?token=$TOKEN (a poke on every change)",
        running.http
    );
    if let Some(secret) = &auth.hs256_secret {
        let ttl = Duration::from_secs(24 * 3600);
        let client = local_token(secret, "demo", None, ttl)?;
        let admin = local_token(secret, "demo", Some("admin"), ttl)?;
        println!("client token (tenant demo): {client}");
        println!("admin token (tenant demo):  {admin}");
        println!(
            "console (sign-in link, 1 h; `syncline-local console` prints a new one): {}",
            console_link(secret, &running.http.to_string(), "demo")?
        );
    }
    println!(
        "try: curl -s -X POST http://{}/v1/sync/pull -H \"authorization: Bearer $TOKEN\" \
              -d '{{\"entities\": [\"property\"], \"limit\": 2}}'",
        running.http
    );
    tokio::signal::ctrl_c()
        .await
        .map_err(|e| syncline::Error::internal(format!("waiting for Ctrl-C: {e}")))?;
    running.stop().await;
    Ok(())
}

/// `token [TENANT] [SCOPE]`: a token signed with the local JWT secret, valid
/// for a day.
fn token(args: &[String]) -> syncline::Result<()> {
    let secret = local_var("SYNCLINE_JWT_HS256_SECRET")
        .ok_or_else(|| syncline::Error::Config("SYNCLINE_JWT_HS256_SECRET is not set".into()))?;
    let tenant = args.first().map_or("demo", String::as_str);
    let scope = args.get(1).map(String::as_str);
    println!(
        "{}",
        local_token(&secret, tenant, scope, Duration::from_secs(24 * 3600))?
    );
    Ok(())
}

/// Prints a sign-in link to the console of the running local service.
fn console(args: &[String]) -> syncline::Result<()> {
    let secret = local_var("SYNCLINE_JWT_HS256_SECRET")
        .ok_or_else(|| syncline::Error::Config("SYNCLINE_JWT_HS256_SECRET is not set".into()))?;
    let http =
        local_var("SYNCLINE_LOCAL_HTTP_ADDR").unwrap_or_else(|| DEFAULT_HTTP_ADDR.to_owned());
    let tenant = args.first().map_or("demo", String::as_str);
    println!("{}", console_link(&secret, &http, tenant)?);
    Ok(())
}

async fn demo_source() -> syncline::Result<()> {
    let (addr, count) = syncline::config::demo_source()?;
    let bound = syncline_local::demo::serve(addr, count).await?;
    println!("demo source: {count} properties at http://{bound}/properties");
    tokio::signal::ctrl_c()
        .await
        .map_err(|e| syncline::Error::internal(format!("waiting for Ctrl-C: {e}")))
}

/// Feeds the retry queue to a retry worker until it is empty, the way
/// Lambda's SQS event source does in AWS (continuations included).
async fn drain() -> syncline::Result<()> {
    let config = Config::from_env()?;
    let adapters = syncline_local::embedded::adapters(&config).await?;
    let worker = Wiring::from_env(&config, &adapters).retry_worker()?;
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
    syncline_local::embedded::adapters(&Config::from_env()?).await
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
