//! Keeps the webhook's certificate current. Self-managed: the CA and serving certificate
//! live in a Secret (made, and renewed before expiry, by whichever replica gets there first;
//! a write carries the version read, so two replicas cannot both renew), every replica
//! serves what the Secret holds, and the CA bundle is written into each webhook of the
//! MutatingWebhookConfiguration — again whenever something (a `helm upgrade`) resets it.
//! Or files that cert-manager writes, reread when they change.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, PatchOperation, TestOperation};
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};

use super::certs::{CertError, CertSet};
use super::tls::{ServingCert, TlsError};

/// How often the certificate and the caBundle are checked.
pub const CHECK_EVERY: Duration = Duration::from_secs(10);

/// Where the serving certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertSource {
    /// Made and renewed by the operator.
    Managed {
        /// The Secret's namespace (the operator's).
        namespace: String,
        /// The Secret's name.
        secret: String,
        /// The MutatingWebhookConfiguration whose caBundles it fills.
        webhook_config: String,
        /// The names the certificate is for (the webhook Service's).
        dns_names: Vec<String>,
    },
    /// `tls.crt` and `tls.key` in this directory, written by someone else.
    Files(PathBuf),
}

/// Why a pass failed (and is tried again).
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// A Kubernetes API call failed.
    #[error("{action}: {source}")]
    Kube {
        /// What was being done.
        action: &'static str,
        /// The API's answer.
        #[source]
        source: kube::Error,
    },
    /// Certificates could not be made.
    #[error(transparent)]
    Cert(#[from] CertError),
    /// The certificate could not be served.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The files could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// Which file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

fn kube_error(action: &'static str) -> impl FnOnce(kube::Error) -> PublishError {
    move |source| PublishError::Kube { action, source }
}

/// Keeps `cert` served from `source` until `stopped` completes.
pub async fn keep(
    client: Client,
    source: CertSource,
    cert: Arc<ServingCert>,
    stopped: impl Future<Output = ()>,
) {
    tokio::pin!(stopped);
    loop {
        let published = match &source {
            CertSource::Managed {
                namespace,
                secret,
                webhook_config,
                dns_names,
            } => {
                let secrets = Api::namespaced(client.clone(), namespace);
                match managed_pass(&secrets, secret, namespace, dns_names, &cert).await {
                    Ok(Some(bundle)) => {
                        let configs = Api::all(client.clone());
                        publish_ca_bundle(&configs, webhook_config, &bundle).await
                    }
                    Ok(None) => Ok(false),
                    Err(error) => Err(error),
                }
            }
            CertSource::Files(dir) => files_pass(dir, &cert).map(|()| false),
        };
        match published {
            Ok(true) => tracing::info!("published the injector's CA in its webhook configuration"),
            Ok(false) => {}
            Err(error) => tracing::warn!(%error, "cannot keep the injector's certificate"),
        }
        tokio::select! {
            () = tokio::time::sleep(CHECK_EVERY) => {}
            () = &mut stopped => return,
        }
    }
}

/// Reads the Secret's set, renewing it when due (or missing, unusable, or for other names),
/// and serves it; the CA bundle to publish, or `None` when another replica renewed it first.
pub async fn managed_pass(
    secrets: &Api<Secret>,
    name: &str,
    namespace: &str,
    dns_names: &[String],
    cert: &ServingCert,
) -> Result<Option<String>, PublishError> {
    let current = secrets
        .get_opt(name)
        .await
        .map_err(kube_error("read the webhook Secret"))?;
    let stored = match current.as_ref().map(CertSet::from_secret) {
        Some(Ok(set)) => Some(set),
        Some(Err(error)) => {
            tracing::warn!(%error, secret = name, "replacing an unusable webhook Secret");
            None
        }
        None => None,
    };
    let now = Timestamp::now();
    let set = match stored {
        Some(set) if !set.needs_renewal(now) && set.dns_names == dns_names => set,
        previous => {
            let set = CertSet::generate(dns_names, now, previous.as_ref())?;
            let mut secret = set.to_secret(name, namespace);
            let written = match current {
                Some(current) => {
                    // The version read: if another replica renewed it meanwhile, a 409.
                    secret.metadata.resource_version = current.metadata.resource_version;
                    secrets.replace(name, &PostParams::default(), &secret).await
                }
                None => secrets.create(&PostParams::default(), &secret).await,
            };
            match written {
                Ok(_) => {
                    tracing::info!(secret = name, not_after = %set.not_after, "made a new injector certificate")
                }
                Err(kube::Error::Api(status)) if status.code == 409 => {
                    // Another replica wrote first: serve its set from the next pass.
                    return Ok(None);
                }
                Err(error) => return Err(kube_error("write the webhook Secret")(error)),
            }
            set
        }
    };
    cert.set(&set.cert, &set.key)?;
    Ok(Some(set.bundle))
}

/// Serves `tls.crt` and `tls.key` from `dir`.
fn files_pass(dir: &std::path::Path, cert: &ServingCert) -> Result<(), PublishError> {
    let read = |file: &str| {
        let path = dir.join(file);
        std::fs::read_to_string(&path).map_err(|source| PublishError::Read { path, source })
    };
    if cert.set(&read("tls.crt")?, &read("tls.key")?)? {
        tracing::info!(dir = %dir.display(), "serving the injector certificate from files");
    }
    Ok(())
}

/// Writes `bundle` into every webhook of `name` that lacks it; whether anything changed.
pub async fn publish_ca_bundle(
    configs: &Api<MutatingWebhookConfiguration>,
    name: &str,
    bundle: &str,
) -> Result<bool, PublishError> {
    let config = configs
        .get(name)
        .await
        .map_err(kube_error("read the MutatingWebhookConfiguration"))?;
    let wanted = ByteString(bundle.as_bytes().to_vec());
    let encoded = serde_json::to_value(&wanted).unwrap_or_default();
    let ops: Vec<PatchOperation> = config
        .webhooks
        .iter()
        .flatten()
        .enumerate()
        .filter(|(_, webhook)| webhook.client_config.ca_bundle.as_ref() != Some(&wanted))
        .flat_map(|(index, webhook)| {
            let index = index.to_string();
            // The webhook at that index is still the one read.
            let test = PatchOperation::Test(TestOperation {
                path: PointerBuf::from_tokens(["webhooks", index.as_str(), "name"]),
                value: webhook.name.clone().into(),
            });
            let add = PatchOperation::Add(AddOperation {
                path: PointerBuf::from_tokens([
                    "webhooks",
                    index.as_str(),
                    "clientConfig",
                    "caBundle",
                ]),
                value: encoded.clone(),
            });
            [test, add]
        })
        .collect();
    if ops.is_empty() {
        return Ok(false);
    }
    configs
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Json::<()>(json_patch::Patch(ops)),
        )
        .await
        .map_err(kube_error(
            "patch the caBundle of the MutatingWebhookConfiguration",
        ))?;
    Ok(true)
}

#[cfg(test)]
mod tests;
