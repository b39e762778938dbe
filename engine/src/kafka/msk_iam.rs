//! Amazon MSK's IAM sign-in (`auth = 'aws_msk_iam'`): SASL/OAUTHBEARER
//! whose token is a SigV4-presigned `kafka-cluster:Connect` request to
//! `kafka.<region>.amazonaws.com`, base64url-encoded, as AWS's own
//! `aws-msk-iam-sasl-signer` libraries make it.
//!
//! The credentials come from the AWS credential chain object_store already
//! walks for the lake (environment, web identity, ECS task role, EC2
//! instance profile), so no AWS SDK is built for it; `~/.aws` profiles are
//! not read. Signing is HMAC-SHA256 from `ring`, which the TLS stack builds
//! anyway.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use object_store::aws::{AmazonS3Builder, AwsCredential, AwsCredentialProvider};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use ring::{digest, hmac};

/// How long a token is good for: the signature's `X-Amz-Expires`, as AWS's
/// signers set it. librdkafka asks for a new one before it runs out.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(900);

/// The `User-Agent` the engine's tokens carry (MSK logs it).
pub const USER_AGENT: &str = concat!("mdengine/", env!("CARGO_PKG_VERSION"));

/// SigV4's service name for MSK's data plane.
const SERVICE: &str = "kafka-cluster";

/// Everything but SigV4's unreserved characters (`A-Z a-z 0-9 - _ . ~`) is
/// percent-encoded.
const SIGV4: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// A signed token and when it expires.
#[derive(Debug, Clone, PartialEq)]
pub struct SignedToken {
    /// The SASL/OAUTHBEARER token: the presigned URL, base64url without padding.
    pub token: String,
    /// When it expires, in milliseconds since the Unix epoch.
    pub expires_ms: i64,
}

/// The MSK IAM token for `region`, signed with `credential` at time `at`.
/// Pure: the same inputs give the same token, which is what lets a test
/// check it against AWS's own signer.
pub fn sign(
    region: &str,
    credential: &AwsCredential,
    at: DateTime<Utc>,
    user_agent: &str,
) -> SignedToken {
    let host = format!("kafka.{region}.amazonaws.com");
    let date = at.format("%Y%m%d").to_string();
    let timestamp = at.format("%Y%m%dT%H%M%SZ").to_string();
    let scope = format!("{date}/{region}/{SERVICE}/aws4_request");
    let mut query = vec![
        ("Action", "kafka-cluster:Connect".to_string()),
        ("X-Amz-Algorithm", "AWS4-HMAC-SHA256".to_string()),
        ("X-Amz-Credential", format!("{}/{scope}", credential.key_id)),
        ("X-Amz-Date", timestamp.clone()),
        ("X-Amz-Expires", TOKEN_LIFETIME.as_secs().to_string()),
        ("X-Amz-SignedHeaders", "host".to_string()),
    ];
    if let Some(token) = &credential.token {
        query.push(("X-Amz-Security-Token", token.clone()));
    }
    let pairs = |query: &[(&str, String)]| {
        (query.iter())
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect::<Vec<_>>()
            .join("&")
    };
    // The URL keeps the order above (AWS's signers' own); the signature is
    // over the parameters sorted by name.
    let in_order = pairs(&query);
    query.sort();
    let canonical_query = pairs(&query);
    // A GET without a body: its payload hash is that of the empty string.
    let canonical_request = format!(
        "GET\n/\n{canonical_query}\nhost:{host}\n\nhost\n{}",
        hex(digest::digest(&digest::SHA256, b"").as_ref())
    );
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{timestamp}\n{scope}\n{}",
        hex(digest::digest(&digest::SHA256, canonical_request.as_bytes()).as_ref())
    );
    let mut key = hmac_sha256(format!("AWS4{}", credential.secret_key).as_bytes(), &date);
    for part in [region, SERVICE, "aws4_request"] {
        key = hmac_sha256(&key, part);
    }
    let signature = hex(&hmac_sha256(&key, &string_to_sign));
    let url = format!(
        "https://{host}/?{in_order}&X-Amz-Signature={signature}&User-Agent={}",
        encode(user_agent)
    );
    SignedToken {
        token: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(url),
        // From the second X-Amz-Date says, not the millisecond of `at`.
        expires_ms: (at.timestamp() + TOKEN_LIFETIME.as_secs() as i64) * 1000,
    }
}

fn encode(s: &str) -> String {
    utf8_percent_encode(s, SIGV4).to_string()
}

fn hmac_sha256(key: &[u8], data: &str) -> Vec<u8> {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    hmac::sign(&key, data.as_bytes()).as_ref().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The region of an MSK cluster from one of its broker host names
/// (`b-1.name.abc123.c2.kafka.us-east-1.amazonaws.com:9098`, or
/// `boot-x.c1.kafka-serverless.eu-west-1.amazonaws.com:9098`).
pub fn region_of_brokers(bootstrap_servers: &str) -> Option<String> {
    bootstrap_servers.split(',').find_map(|server| {
        let host = server.trim().split(':').next()?;
        let labels: Vec<&str> = host.split('.').collect();
        labels.windows(3).find_map(|w| {
            let is_kafka = w[0] == "kafka" || w[0] == "kafka-serverless";
            (is_kafka && w[2] == "amazonaws" && !w[1].is_empty()).then(|| w[1].to_string())
        })
    })
}

/// Makes MSK IAM tokens for a region: the region, and the AWS credential
/// chain (which caches and refreshes what it fetches). One per region in the
/// process, shared by every client that signs in there.
pub struct MskIamTokens {
    region: String,
    credentials: AwsCredentialProvider,
}

impl std::fmt::Debug for MskIamTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MskIamTokens")
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

/// Why no token could be made.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// No region was given and none could be told from the brokers or the environment.
    #[error("`auth = 'aws_msk_iam'` needs the cluster's region: set `aws.region` (or AWS_REGION)")]
    NoRegion,
    /// The AWS credential chain failed.
    #[error("no AWS credentials for MSK IAM sign-in")]
    Credentials(#[source] object_store::Error),
}

impl MskIamTokens {
    /// Tokens for the cluster at `bootstrap_servers`, in `region` if given,
    /// else the region its host names tell, else `AWS_REGION` /
    /// `AWS_DEFAULT_REGION`; credentials from the process's AWS chain, built
    /// once per region (so the clients of a job fetch credentials once, not
    /// each on its own).
    pub fn for_cluster(
        region: Option<&str>,
        bootstrap_servers: &str,
    ) -> Result<Arc<Self>, TokenError> {
        static BY_REGION: OnceLock<Mutex<HashMap<String, Arc<MskIamTokens>>>> = OnceLock::new();
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let region = (region.map(str::to_string))
            .or_else(|| region_of_brokers(bootstrap_servers))
            .or_else(|| env("AWS_REGION"))
            .or_else(|| env("AWS_DEFAULT_REGION"))
            .ok_or(TokenError::NoRegion)?;
        let mut by_region =
            (BY_REGION.get_or_init(Default::default).lock()).unwrap_or_else(|e| e.into_inner());
        if let Some(tokens) = by_region.get(&region) {
            return Ok(Arc::clone(tokens));
        }
        // object_store builds its credential chain for a bucket; the bucket
        // name is never used, only the chain.
        let store = AmazonS3Builder::from_env()
            .with_bucket_name("msk-iam")
            .with_region(&region)
            .build()
            .map_err(TokenError::Credentials)?;
        let tokens = Arc::new(Self {
            region: region.clone(),
            credentials: store.credentials().clone(),
        });
        by_region.insert(region, Arc::clone(&tokens));
        Ok(tokens)
    }

    /// A token signed now with the chain's current credentials. Blocking:
    /// librdkafka asks for it from a thread that polls a client, which may
    /// be one of the runtime's, so the fetch runs on a runtime of its own.
    pub fn token(&self) -> Result<SignedToken, TokenError> {
        let credentials = self.credentials.clone();
        let fetch = credentials_runtime().spawn(async move { credentials.get_credential().await });
        let credential = futures::executor::block_on(fetch)
            .map_err(|e| TokenError::Credentials(object_store::Error::JoinError { source: e }))?
            .map_err(TokenError::Credentials)?;
        Ok(sign(&self.region, &credential, Utc::now(), USER_AGENT))
    }
}

/// One small runtime for credential fetches (instance metadata, STS), kept
/// for the process: the chain's HTTP client keeps its connections on it.
fn credentials_runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("msk-iam-credentials")
            .enable_all()
            .build()
            .expect("a one-thread runtime can be built")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credential(token: Option<&str>) -> AwsCredential {
        AwsCredential {
            key_id: "AKIDEXAMPLE".into(),
            secret_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            token: token.map(str::to_string),
        }
    }

    fn url_of(token: &SignedToken) -> String {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&token.token)
            .unwrap();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn a_token_is_a_presigned_connect_request_that_expires_in_fifteen_minutes() {
        let at = DateTime::parse_from_rfc3339("2026-12-01T10:20:30Z")
            .unwrap()
            .to_utc();
        let token = sign(
            "eu-west-1",
            &credential(Some("session/token+=")),
            at,
            "test-agent/1",
        );
        let url = url_of(&token);
        assert!(
            url.starts_with(
                "https://kafka.eu-west-1.amazonaws.com/?Action=kafka-cluster%3AConnect&"
            ),
            "{url}"
        );
        assert!(url.contains("X-Amz-Credential=AKIDEXAMPLE%2F20261201%2Feu-west-1%2Fkafka-cluster%2Faws4_request"), "{url}");
        assert!(
            url.contains("X-Amz-Security-Token=session%2Ftoken%2B%3D"),
            "{url}"
        );
        assert!(url.ends_with("&User-Agent=test-agent%2F1"), "{url}");
        assert!(
            !url.contains("wJalr"),
            "the secret key never travels: {url}"
        );
        assert_eq!(token.expires_ms, at.timestamp_millis() + 900_000);
        // Same inputs, same token; another second, another signature.
        assert_eq!(
            sign(
                "eu-west-1",
                &credential(Some("session/token+=")),
                at,
                "test-agent/1"
            ),
            token
        );
        let later = at + chrono::Duration::seconds(1);
        assert_ne!(
            sign(
                "eu-west-1",
                &credential(Some("session/token+=")),
                later,
                "test-agent/1"
            )
            .token,
            token.token
        );
    }

    #[test]
    fn the_region_comes_from_msk_broker_names() {
        assert_eq!(
            region_of_brokers("b-1.prices.abc123.c2.kafka.us-east-1.amazonaws.com:9098,b-2.prices.abc123.c2.kafka.us-east-1.amazonaws.com:9098").as_deref(),
            Some("us-east-1")
        );
        assert_eq!(
            region_of_brokers("boot-xyz.c1.kafka-serverless.eu-west-1.amazonaws.com:9098")
                .as_deref(),
            Some("eu-west-1")
        );
        assert_eq!(region_of_brokers("127.0.0.1:9092"), None);
        assert_eq!(region_of_brokers("kafka.internal:9092"), None);
    }
}
