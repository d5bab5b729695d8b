//! A long-poll's wait: until a tenant's feed passes a sequence number, or
//! a deadline. A commit made by this process wakes it at once (the store's
//! commit signal); commits of other processes (other Lambda instances,
//! scheduled syncs, webhooks) are found by reading the tenant's counter,
//! once per `CHECK_EVERY`: one small consistent read a second for a
//! waiting client, never a loop against the store.

use std::time::Duration;

use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;

use crate::error::Result;
use crate::model::{Seq, TenantId};
use crate::store::{Commit, Store};

/// How often a waiting pull reads the tenant counter.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);

/// Whether the feed of `tenant` passed `seq` before `until`.
pub(super) async fn past(
    store: &Store,
    tenant: &TenantId,
    seq: Seq,
    until: Instant,
) -> Result<bool> {
    // Listening starts before the first read, so a commit between the two
    // is heard.
    let mut commits = store.commits().subscribe();
    loop {
        if store.latest_seq(tenant).await? > seq {
            return Ok(true);
        }
        let now = Instant::now();
        if now >= until {
            return Ok(false);
        }
        let check = tokio::time::sleep_until(until.min(now + CHECK_EVERY));
        tokio::select! {
            () = check => {}
            heard = heard_past(&mut commits, tenant, seq) => {
                if heard {
                    return Ok(true);
                }
                // Fell behind the announcements: read the counter now.
            }
        }
    }
}

/// Waits for an announced commit of `tenant` past `seq` (true), or until
/// the listener fell behind (false). A closed channel never answers.
async fn heard_past(
    commits: &mut tokio::sync::broadcast::Receiver<Commit>,
    tenant: &TenantId,
    seq: Seq,
) -> bool {
    loop {
        match commits.recv().await {
            Ok(commit) if commit.tenant == *tenant && commit.seq > seq => return true,
            Ok(_) => {}
            Err(RecvError::Lagged(_)) => return false,
            Err(RecvError::Closed) => std::future::pending::<()>().await,
        }
    }
}
