//! The audit trail: every event goes out as one structured log line (target `audit`) and,
//! unless it is routine upkeep ([`AuditEvent::is_routine`]), is stored under its connection,
//! where administrators can read it back.

use chrono::Utc;

use super::{Keyport, ServiceError};
use crate::domain::{AuditAction, AuditEvent, ConnectionId, Owner, Principal};
use crate::ports::{Page, PageRequest};

impl Keyport {
    /// Records one event. Storing it is best effort: a store that is down must not turn a
    /// successful refresh into a failed read; the log line is written either way.
    pub(crate) async fn audit(
        &self,
        connection_id: &ConnectionId,
        action: AuditAction,
        actor: &str,
        owner: Option<&Owner>,
        detail: Option<&str>,
    ) {
        let event = AuditEvent::new(
            connection_id.clone(),
            action,
            actor,
            owner.cloned(),
            detail.map(str::to_owned),
            Utc::now(),
        );
        let stored = !event.is_routine();
        tracing::info!(
            target: "audit",
            event = action.as_str(),
            stored,
            event_id = %event.id,
            connection_id = %connection_id,
            actor,
            owner = owner.map(tracing::field::display),
            detail,
            "audit"
        );
        if stored && let Err(error) = self.store.append_audit(&event).await {
            tracing::warn!(event_id = %event.id, %error, "the audit event could not be stored");
        }
    }

    /// Records a refusal by the access rules against an existing connection, and passes the
    /// outcome on unchanged.
    pub(crate) async fn audit_denial<T>(
        &self,
        principal: &Principal,
        id: &ConnectionId,
        outcome: Result<T, ServiceError>,
    ) -> Result<T, ServiceError> {
        if let Err(ServiceError::Forbidden(reason)) = &outcome
            // Only for connections that exist: refusals of made-up ids would fill the store.
            && let Ok(Some(_)) = self.store.get_connection(id).await
        {
            self.audit(
                id,
                AuditAction::AccessDenied,
                principal.subject.as_str(),
                None,
                Some(reason),
            )
            .await;
        }
        outcome
    }

    /// One connection's events, newest first; still readable after the connection is gone.
    pub async fn audit_trail(
        &self,
        principal: &Principal,
        id: &ConnectionId,
        page: PageRequest,
    ) -> Result<Page<AuditEvent>, ServiceError> {
        let allowed = self.access.require_audit_reader(principal);
        self.audit_denial(principal, id, allowed).await?;
        Ok(self.store.list_audit(id, page).await?)
    }
}
