//! `vsctl A -- B -- C`: many changes as one, as ovs-vsctl does.
//!
//! While a transaction runs, [`Manager::commit`] applies each request's
//! change to the desired state in memory only (so the next request sees
//! it) and keeps the devices it opened; what a handler would do after its
//! commit (flushing connections, deleting a persistent device) waits with
//! [`Manager::when_committed`]. At the end the whole state is validated,
//! saved once and published as one snapshot. If any request fails, or the
//! save does, the state before the transaction comes back and the devices
//! opened on the way are closed: nothing changed.

use tracing::info;
use vswitch_ctl::{Reply, Request};

use super::config::DesiredState;
use super::{ControlError, Manager, Opened, Txn};

/// What a running transaction has done so far.
pub(super) struct Batch {
    /// The state before it.
    before: DesiredState,
    /// Devices its requests opened, applied at the end.
    opened: Vec<Opened>,
    /// What its requests do once it is committed, in order.
    after: Vec<AfterCommit>,
}

pub(super) type AfterCommit = Box<dyn FnOnce(&mut Manager) + Send>;

impl Manager {
    /// Applies `requests` as one change; their replies in order.
    pub fn transaction(&mut self, requests: Vec<Request>) -> Result<Reply, ControlError> {
        if let Some((i, why)) = requests
            .iter()
            .enumerate()
            .find_map(|(i, r)| r.not_transactional().map(|why| (i, why)))
        {
            return Err(ControlError::NotTransactional { index: i + 1, why });
        }
        self.batch = Some(Batch {
            before: self.desired.clone(),
            opened: Vec::new(),
            after: Vec::new(),
        });
        let mut replies = Vec::with_capacity(requests.len());
        for (i, request) in requests.into_iter().enumerate() {
            match self.handle(request) {
                Ok(reply) => replies.push(reply),
                Err(source) => {
                    self.abandon();
                    return Err(ControlError::InTransaction {
                        index: i + 1,
                        source: Box::new(source),
                    });
                }
            }
        }
        let Some(batch) = self.batch.take() else {
            return Ok(Reply::Replies(replies));
        };
        let count = replies.len();
        let changed = self.desired != batch.before || !batch.opened.is_empty();
        self.conclude(batch.before, batch.opened)?;
        for after in batch.after {
            after(self);
        }
        info!(requests = count, changed, "transaction committed");
        Ok(Reply::Replies(replies))
    }

    /// Puts back the state from before the running transaction; the
    /// devices it opened close as they are dropped.
    fn abandon(&mut self) {
        if let Some(batch) = self.batch.take() {
            self.desired = batch.before;
        }
    }

    /// Runs `f` once the current change is committed: now, or at the end
    /// of the running transaction (never, if it fails).
    pub(super) fn when_committed(&mut self, f: impl FnOnce(&mut Manager) + Send + 'static) {
        match &mut self.batch {
            Some(batch) => batch.after.push(Box::new(f)),
            None => f(self),
        }
    }

    /// [`Manager::commit`] inside a transaction: the change edits the
    /// desired state in place (a failing request abandons the whole
    /// transaction, which puts back the state from before it) and its
    /// opened devices wait for the end. No copy and no validation per
    /// request: both are O(state), which made 1000 requests O(n²); the
    /// transaction validates once at its end. A request that opens a device
    /// still validates first ([`super::Txn::validate`]).
    pub(super) fn commit_in_batch<T>(
        &mut self,
        change: impl FnOnce(&mut Txn) -> Result<T, ControlError>,
    ) -> Result<T, ControlError> {
        let mut txn = Txn {
            desired: std::mem::take(&mut self.desired),
            opened: Vec::new(),
        };
        let out = change(&mut txn);
        let Txn { desired, opened } = txn;
        self.desired = desired;
        if out.is_ok() {
            if let Some(batch) = &mut self.batch {
                batch.opened.extend(opened);
            }
        }
        out
    }
}
