//! Leader election on a `coordination.k8s.io` Lease, so that only one operator replica
//! reconciles: the holder renews it every `renew` interval; another replica takes it once it
//! has not been renewed for `duration`. Writes carry the Lease's resourceVersion, so two
//! replicas racing for it cannot both win. (A few calls on kube's `Api<Lease>`: smaller than a
//! dependency.)

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, ObjectMeta, PostParams};

/// Which Lease, held by whom, for how long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseConfig {
    /// The Lease's name.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// This replica's identity (its pod name).
    pub holder: String,
    /// How long the Lease holds without renewal.
    pub duration: Duration,
    /// How often the holder renews it, and others try to take it.
    pub renew: Duration,
}

/// The Lease spec to write so that `holder` holds it at `now`, or `None` while another
/// holder's Lease is still current.
pub fn claim(
    current: Option<&LeaseSpec>,
    holder: &str,
    now: Timestamp,
    duration: Duration,
) -> Option<LeaseSpec> {
    let seconds = i32::try_from(duration.as_secs()).unwrap_or(i32::MAX);
    let ours = current.and_then(|s| s.holder_identity.as_deref()) == Some(holder);
    if let Some(spec) = current
        && !ours
        && spec.holder_identity.is_some()
    {
        let held_for = spec.lease_duration_seconds.map_or(duration, |s| {
            Duration::from_secs(u64::try_from(s).unwrap_or(0))
        });
        let renewed = spec.renew_time.as_ref().map(|t| t.0);
        let expires =
            renewed.and_then(|t| t.checked_add(SignedDuration::try_from(held_for).ok()?).ok());
        if expires.is_some_and(|expires| expires > now) {
            return None;
        }
    }
    let transitions = current.and_then(|s| s.lease_transitions).unwrap_or(0);
    Some(LeaseSpec {
        holder_identity: Some(holder.to_owned()),
        lease_duration_seconds: Some(seconds),
        acquire_time: match ours {
            true => current.and_then(|s| s.acquire_time.clone()),
            false => Some(MicroTime(now)),
        },
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(if ours { transitions } else { transitions + 1 }),
        ..LeaseSpec::default()
    })
}

/// Holds a Lease for this replica.
pub struct Elector {
    api: Api<Lease>,
    config: LeaseConfig,
}

impl Elector {
    /// An elector for `config`'s Lease.
    pub fn new(client: kube::Client, config: LeaseConfig) -> Self {
        Self {
            api: Api::namespaced(client, &config.namespace),
            config,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &LeaseConfig {
        &self.config
    }

    /// Takes or renews the Lease; whether this replica holds it now.
    pub async fn try_hold(&self) -> Result<bool, kube::Error> {
        let current = self.api.get_opt(&self.config.name).await?;
        let spec = current.as_ref().and_then(|lease| lease.spec.as_ref());
        let Some(spec) = claim(
            spec,
            &self.config.holder,
            Timestamp::now(),
            self.config.duration,
        ) else {
            return Ok(false);
        };
        let written = match current {
            Some(mut lease) => {
                lease.spec = Some(spec);
                // The resourceVersion read above: a concurrent write makes this a 409.
                self.api
                    .replace(&self.config.name, &PostParams::default(), &lease)
                    .await
            }
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.config.name.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(spec),
                };
                self.api.create(&PostParams::default(), &lease).await
            }
        };
        match written {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// Waits until this replica holds the Lease.
    pub async fn acquire(&self) {
        loop {
            match self.try_hold().await {
                Ok(true) => return,
                Ok(false) => {}
                Err(error) => tracing::warn!(%error, "cannot take the leader Lease"),
            }
            tokio::time::sleep(self.config.renew).await;
        }
    }

    /// Renews the Lease until a renewal fails to land before the Lease would expire; returns
    /// then (leadership is lost: stop reconciling).
    pub async fn keep(&self) {
        let mut last = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(self.config.renew).await;
            match self.try_hold().await {
                Ok(true) => last = tokio::time::Instant::now(),
                Ok(false) => return,
                Err(error) => tracing::warn!(%error, "cannot renew the leader Lease"),
            }
            // Stop before another replica may take it: a renewal short of the duration.
            if last.elapsed() + self.config.renew >= self.config.duration {
                return;
            }
        }
    }

    /// Gives the Lease up (on shutdown), so a standby takes over without waiting it out.
    pub async fn release(&self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.config.name).await else {
            return;
        };
        let Some(spec) = lease.spec.as_mut() else {
            return;
        };
        if spec.holder_identity.as_deref() != Some(&self.config.holder) {
            return;
        }
        spec.holder_identity = None;
        spec.renew_time = None;
        if let Err(error) = self
            .api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
        {
            tracing::warn!(%error, "cannot release the leader Lease");
        }
    }
}

#[cfg(test)]
mod tests;
