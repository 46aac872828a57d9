//! The webhook's certificates: a CA of its own and a serving certificate it signs for the
//! webhook Service's names, kept in a Secret that every operator replica reads. They are
//! renewed well before they expire; the caBundle then holds the new CA and the one before,
//! so a replica still serving the old certificate stays trusted until it reloads.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::{SignedDuration, Timestamp, tz::TimeZone};
use kube::api::ObjectMeta;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// How long a generated certificate is valid.
pub const VALIDITY: Duration = Duration::from_secs(90 * 24 * 3600);
/// Renewed when less than this is left.
pub const RENEW_BEFORE: Duration = Duration::from_secs(30 * 24 * 3600);

/// The Secret's keys: the usual `kubernetes.io/tls` ones, the CA, and the bundle of CAs to
/// trust.
const CERT_KEY: &str = "tls.crt";
const KEY_KEY: &str = "tls.key";
const CA_KEY: &str = "ca.crt";
const BUNDLE_KEY: &str = "ca-bundle.crt";
/// When the serving certificate expires (RFC 3339) and the names it is for (comma
/// separated), so that no X.509 parser is needed.
const NOT_AFTER_ANNOTATION: &str = "txmesh.io/not-after";
const DNS_NAMES_ANNOTATION: &str = "txmesh.io/dns-names";

/// Why certificates could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// The certificate library failed.
    #[error("cannot generate the webhook certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// The Secret lacks a key or an expiry, or holds something else.
    #[error("the webhook Secret has no usable {0}")]
    Incomplete(&'static str),
}

/// A CA, a serving certificate it signed, and the CAs clients should trust.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSet {
    /// The CA certificate (PEM).
    pub ca: String,
    /// The serving certificate (PEM).
    pub cert: String,
    /// Its private key (PKCS#8 PEM).
    pub key: String,
    /// The CAs to trust: this one, then the one before it (PEM).
    pub bundle: String,
    /// When the serving certificate expires.
    pub not_after: Timestamp,
    /// The names it is for.
    pub dns_names: Vec<String>,
}

impl CertSet {
    /// A new CA and serving certificate for `dns_names`, valid from a day before `now` (for
    /// clock skew) for [`VALIDITY`]; `previous` (an earlier set) stays in the bundle.
    pub fn generate(
        dns_names: &[String],
        now: Timestamp,
        previous: Option<&CertSet>,
    ) -> Result<Self, CertError> {
        let not_before = now - SignedDuration::from_hours(24);
        let not_after = now + SignedDuration::try_from(VALIDITY).unwrap_or(SignedDuration::ZERO);
        let validity = |params: &mut CertificateParams| {
            let ((y0, m0, d0), (y1, m1, d1)) = (ymd(not_before), ymd(not_after));
            params.not_before = rcgen::date_time_ymd(y0, m0, d0);
            params.not_after = rcgen::date_time_ymd(y1, m1, d1);
        };
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "txmesh sidecar injector CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        validity(&mut ca_params);
        // ECDSA P-256: what every API server accepts (some refuse Ed25519).
        let ca_key = KeyPair::generate()?;
        let ca = ca_params.self_signed(&ca_key)?.pem();
        let issuer = Issuer::new(ca_params, ca_key);

        let mut params = CertificateParams::new(dns_names.to_vec())?;
        if let Some(first) = dns_names.first() {
            params
                .distinguished_name
                .push(DnType::CommonName, first.as_str());
        }
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        validity(&mut params);
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &issuer)?.pem();
        let bundle = match previous {
            Some(previous) if previous.not_after > now => format!("{ca}{}", previous.ca),
            _ => ca.clone(),
        };
        Ok(Self {
            ca,
            cert,
            key: key.serialize_pem(),
            bundle,
            // The day granularity of the certificate itself.
            not_after: day_start(not_after),
            dns_names: dns_names.to_vec(),
        })
    }

    /// Whether it is time to make a new set.
    pub fn needs_renewal(&self, now: Timestamp) -> bool {
        let renew_at =
            self.not_after - SignedDuration::try_from(RENEW_BEFORE).unwrap_or(SignedDuration::ZERO);
        now >= renew_at
    }

    /// The set as the data and annotation of the Secret `name` in `namespace`.
    pub fn to_secret(&self, name: &str, namespace: &str) -> Secret {
        let data = [
            (CA_KEY, &self.ca),
            (CERT_KEY, &self.cert),
            (KEY_KEY, &self.key),
            (BUNDLE_KEY, &self.bundle),
        ]
        .into_iter()
        .map(|(key, pem)| (key.to_owned(), ByteString(pem.as_bytes().to_vec())))
        .collect();
        Secret {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                namespace: Some(namespace.to_owned()),
                annotations: Some(BTreeMap::from([
                    (NOT_AFTER_ANNOTATION.to_owned(), self.not_after.to_string()),
                    (DNS_NAMES_ANNOTATION.to_owned(), self.dns_names.join(",")),
                ])),
                labels: Some(BTreeMap::from([(
                    "app.kubernetes.io/managed-by".to_owned(),
                    "txmesh-operator".to_owned(),
                )])),
                ..ObjectMeta::default()
            },
            type_: Some("kubernetes.io/tls".into()),
            data: Some(data),
            ..Secret::default()
        }
    }

    /// The set a Secret holds.
    pub fn from_secret(secret: &Secret) -> Result<Self, CertError> {
        let data = secret.data.as_ref().ok_or(CertError::Incomplete("data"))?;
        let pem = |key: &'static str| {
            data.get(key)
                .and_then(|bytes| String::from_utf8(bytes.0.clone()).ok())
                .filter(|pem| pem.contains("-----BEGIN "))
                .ok_or(CertError::Incomplete(key))
        };
        let annotation = |key| secret.metadata.annotations.as_ref()?.get(key);
        let not_after = annotation(NOT_AFTER_ANNOTATION)
            .and_then(|t| t.parse().ok())
            .ok_or(CertError::Incomplete(NOT_AFTER_ANNOTATION))?;
        let dns_names = annotation(DNS_NAMES_ANNOTATION)
            .ok_or(CertError::Incomplete(DNS_NAMES_ANNOTATION))?
            .split(',')
            .map(str::to_owned)
            .collect();
        Ok(Self {
            ca: pem(CA_KEY)?,
            cert: pem(CERT_KEY)?,
            key: pem(KEY_KEY)?,
            bundle: pem(BUNDLE_KEY)?,
            not_after,
            dns_names,
        })
    }
}

/// The webhook Service's names a serving certificate covers.
pub fn service_names(namespace: &str, service: &str, cluster_domain: &str) -> Vec<String> {
    vec![
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.{cluster_domain}"),
    ]
}

fn day_start(t: Timestamp) -> Timestamp {
    let date = t.to_zoned(TimeZone::UTC).date();
    date.to_zoned(TimeZone::UTC).map_or(t, |z| z.timestamp())
}

/// The UTC calendar day of `t`.
fn ymd(t: Timestamp) -> (i32, u8, u8) {
    let date = t.to_zoned(TimeZone::UTC).date();
    let small = |n: i8| u8::try_from(n).unwrap_or(1);
    (
        i32::from(date.year()),
        small(date.month()),
        small(date.day()),
    )
}
