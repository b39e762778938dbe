//! The contexts of the engine's Kafka clients: what each client does beyond
//! librdkafka's defaults.
//!
//! Every context carries a [`ClientHooks`]: it logs librdkafka's errors,
//! remembers the last one (so a metadata look-up that times out can say
//! *why*: a refused certificate, a wrong password), and makes MSK IAM tokens
//! when the table asks for `auth = 'aws_msk_iam'`.

use std::error::Error;
use std::ffi::CString;
use std::sync::{Arc, Mutex};

use rdkafka::client::{Client, OAuthToken};
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::ClientContext;

use super::msk_iam::MskIamTokens;
use crate::error::{EngineError, Result};

/// What one client's context holds: the MSK IAM token source (if any), the
/// client's last broker errors, and when it was last handed a token.
#[derive(Clone, Default)]
pub struct ClientHooks {
    tokens: Option<Arc<MskIamTokens>>,
    errors: Arc<Mutex<BrokerErrors>>,
    /// When this client was last handed a token by [`Self::sign_in`].
    signed_in: Arc<Mutex<Option<std::time::Instant>>>,
}

/// What librdkafka last reported about the connection to the brokers.
#[derive(Default)]
struct BrokerErrors {
    /// The last error of any kind.
    last: Option<String>,
    /// The last refusal, and when: the brokers refused who we are (TLS
    /// certificate, SASL login) rather than being out of reach, which
    /// retrying cannot mend. Kept apart because librdkafka follows a
    /// refusal with "all brokers are down".
    refused: Option<(std::time::Instant, String)>,
}

/// How long a refusal explains a failed look-up: a refusal older than a
/// metadata timeout says nothing about the brokers now.
const REFUSAL_MEMORY: std::time::Duration = super::METADATA_TIMEOUT;

impl ClientHooks {
    /// Hooks that sign in with `tokens` (MSK IAM).
    pub fn signing_with(tokens: Arc<MskIamTokens>) -> Self {
        Self {
            tokens: Some(tokens),
            errors: Default::default(),
            signed_in: Default::default(),
        }
    }

    /// Logs librdkafka's `error` (`client` names the client in the log) and
    /// remembers it.
    pub(crate) fn error(&self, client: &str, error: KafkaError, reason: &str) {
        let code = error.rdkafka_error_code();
        if code == Some(RDKafkaErrorCode::PartitionEOF) {
            tracing::trace!(%reason, "end of partition");
            return;
        }
        tracing::error!("librdkafka ({client}): {error}: {reason}");
        let refused = is_refusal(code, reason);
        let mut errors = self.errors.lock().unwrap_or_else(|e| e.into_inner());
        errors.last = Some(reason.to_string());
        if refused {
            errors.refused = Some((std::time::Instant::now(), reason.to_string()));
        }
    }

    /// Why the brokers refused this client, if they did lately: a look-up
    /// that waits for them cannot succeed.
    pub fn refusal(&self) -> Option<String> {
        let errors = self.errors.lock().unwrap_or_else(|e| e.into_inner());
        (errors.refused.as_ref())
            .filter(|(at, _)| at.elapsed() < REFUSAL_MEMORY)
            .map(|(_, text)| text.clone())
    }

    /// Resolves once the brokers have refused this client, with why: what an
    /// operation that would otherwise wait out its timeout can race against.
    pub async fn refused(&self) -> String {
        loop {
            if let Some(why) = self.refusal() {
                return why;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// The last broker error of any kind.
    pub fn last_error(&self) -> Option<String> {
        let errors = self.errors.lock().unwrap_or_else(|e| e.into_inner());
        errors.last.clone()
    }

    /// Hands `client` a new token if its last one from [`Self::sign_in`] is
    /// half-way through its life. For clients nobody polls (offset
    /// look-ups and commits outside the group): librdkafka asks them for
    /// new tokens through their event queue, which they never read. Call
    /// before each use.
    pub fn keep_signed_in<C: ClientContext>(&self, client: &Client<C>) -> Result<()> {
        let last = *self.signed_in.lock().unwrap_or_else(|e| e.into_inner());
        match last {
            Some(at) if at.elapsed() < super::msk_iam::TOKEN_LIFETIME / 2 => Ok(()),
            _ => self.sign_in(client),
        }
    }

    /// A new MSK IAM token, for librdkafka's refresh.
    pub(crate) fn oauth_token(&self) -> std::result::Result<OAuthToken, Box<dyn Error>> {
        let Some(tokens) = &self.tokens else {
            return Err("SASL/OAUTHBEARER is only signed for `auth = 'aws_msk_iam'`".into());
        };
        let signed = tokens.token().map_err(|e| {
            let text = crate::error::Chain(&e).to_string();
            tracing::error!("MSK IAM sign-in: {text}");
            text
        })?;
        Ok(OAuthToken {
            token: signed.token,
            principal_name: String::new(),
            lifetime_ms: signed.expires_ms,
        })
    }

    /// Hands `client` its first MSK IAM token at once. librdkafka asks for
    /// tokens through the client's event queue, which nobody polls before
    /// the first metadata look-up; without this, that look-up would wait
    /// for a token until it timed out. Later refreshes go through the queue.
    pub fn sign_in<C: ClientContext>(&self, client: &Client<C>) -> Result<()> {
        if self.tokens.is_none() {
            return Ok(());
        }
        let token = self
            .oauth_token()
            .map_err(|e| EngineError::kafka_msg(format!("MSK IAM sign-in: {e}")))?;
        let value = CString::new(token.token)
            .map_err(|_| EngineError::Internal("an MSK IAM token holds a NUL byte".into()))?;
        let principal = CString::default();
        let mut errstr = [0 as std::ffi::c_char; 512];
        // SAFETY: the client pointer is live for the call (borrowed from
        // `client`); the strings are NUL-terminated and outlive it; no
        // extensions are passed; `errstr` is as long as we say.
        let err = unsafe {
            rdkafka::bindings::rd_kafka_oauthbearer_set_token(
                client.native_ptr(),
                value.as_ptr(),
                token.lifetime_ms,
                principal.as_ptr(),
                std::ptr::null_mut(),
                0,
                errstr.as_mut_ptr(),
                errstr.len(),
            )
        };
        if err != rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR {
            // SAFETY: librdkafka NUL-terminates what it writes into `errstr`.
            let text = unsafe { std::ffi::CStr::from_ptr(errstr.as_ptr()) };
            return Err(EngineError::kafka_msg(format!(
                "MSK IAM sign-in: librdkafka refused the token: {}",
                text.to_string_lossy()
            )));
        }
        *self.signed_in.lock().unwrap_or_else(|e| e.into_inner()) = Some(std::time::Instant::now());
        Ok(())
    }
}

/// Whether librdkafka's error says the brokers refused who we are (a
/// certificate, a login, a mechanism they do not offer), which retrying
/// cannot mend, rather than something passing: librdkafka reports a
/// throttled connection, a token not yet fetched or a handshake that timed
/// out with the same authentication code.
fn is_refusal(code: Option<RDKafkaErrorCode>, reason: &str) -> bool {
    let reason = reason.to_ascii_lowercase();
    let passing = [
        "too many connect",
        "throttl",
        "timed out",
        "timeout",
        "failed to acquire",
    ];
    if passing.iter().any(|p| reason.contains(p)) {
        return false;
    }
    match code {
        Some(
            RDKafkaErrorCode::SaslAuthenticationFailed
            | RDKafkaErrorCode::UnsupportedSASLMechanism
            | RDKafkaErrorCode::IllegalSASLState,
        ) => true,
        Some(RDKafkaErrorCode::SSL) => {
            reason.contains("certificate") || reason.contains("handshake failed")
        }
        Some(RDKafkaErrorCode::Authentication) => {
            reason.contains("authentication failed")
                || reason.contains("mechanism handshake failed")
                || reason.contains("certificate")
        }
        _ => false,
    }
}

/// Implements [`ClientContext`] for a context with a `hooks` field: errors
/// logged and remembered under `$label`, MSK IAM tokens made on request.
macro_rules! client_context_with_hooks {
    ($context:ty, $label:expr) => {
        impl rdkafka::ClientContext for $context {
            const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

            fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
                self.hooks.error($label, error, reason);
            }

            fn generate_oauth_token(
                &self,
                _config: Option<&str>,
            ) -> std::result::Result<rdkafka::client::OAuthToken, Box<dyn std::error::Error>> {
                self.hooks.oauth_token()
            }
        }
    };
}
pub(crate) use client_context_with_hooks;

/// The context of our consumers and metadata clients. End-of-partition
/// events are not errors: consumers that ask for them
/// (`enable.partition.eof`) read them from the message stream; once a
/// partition is paused at its end they also arrive as "global errors".
#[derive(Clone, Default)]
pub struct ConsumerLogs {
    /// The table's hooks.
    pub hooks: ClientHooks,
}

impl ConsumerLogs {
    /// A context over `hooks`.
    pub fn new(hooks: ClientHooks) -> Self {
        Self { hooks }
    }
}

client_context_with_hooks!(ConsumerLogs, "consumer");
impl ConsumerContext for ConsumerLogs {}

/// The context of producers that need nothing but the hooks (the sinks'
/// `FutureProducer`s, whose deliveries are awaited one by one).
#[derive(Clone, Default)]
pub struct ProducerLogs {
    /// The table's hooks.
    pub hooks: ClientHooks,
}

impl ProducerLogs {
    /// A context over `hooks`.
    pub fn new(hooks: ClientHooks) -> Self {
        Self { hooks }
    }
}

client_context_with_hooks!(ProducerLogs, "producer");

/// A producer context that counts (and logs) failed deliveries, so that a
/// caller never reports records as written, or commits past them, when
/// their copy was lost.
pub struct DeliveryCounter {
    failed: std::sync::atomic::AtomicU64,
    /// What the records are, for the log ("dead-letter", "trade").
    what: &'static str,
    /// The table's hooks.
    pub hooks: ClientHooks,
}

impl DeliveryCounter {
    /// Counts the failed deliveries of `what` records of a client with `hooks`.
    pub fn new(what: &'static str, hooks: ClientHooks) -> Self {
        Self {
            failed: Default::default(),
            what,
            hooks,
        }
    }

    /// Fails if any record to `topic` was not delivered (the log says why).
    pub fn check(&self, topic: &str) -> Result<()> {
        match self.failed.load(std::sync::atomic::Ordering::Relaxed) {
            0 => Ok(()),
            n => Err(EngineError::kafka_msg(format!(
                "{n} {} records could not be written to topic `{topic}` (the log says why)",
                self.what
            ))),
        }
    }
}

/// Whether `n` is 10, 100, 1000, ...
fn is_power_of_ten(mut n: u64) -> bool {
    while n >= 10 && n % 10 == 0 {
        n /= 10;
    }
    n == 1
}

client_context_with_hooks!(DeliveryCounter, "producer");

impl rdkafka::producer::ProducerContext for DeliveryCounter {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &rdkafka::producer::DeliveryResult<'_>, _: ()) {
        if let Err((e, m)) = result {
            use rdkafka::Message;
            let failed = 1 + (self.failed).fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            // The first few, then every power of ten: a refused topic fails
            // every record, and a line each would flood the log.
            if failed <= 10 || is_power_of_ten(failed) {
                tracing::error!(topic = m.topic(), error = %e, failed, "{} record not delivered", self.what);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_final_refusals_stop_a_look_up_early() {
        let auth = Some(RDKafkaErrorCode::Authentication);
        let refusals = [
            (auth, "SASL authentication error: SASL SCRAM authentication failed: broker responded with unknown-user"),
            (auth, "SASL PLAIN mechanism handshake failed: Broker: Unsupported SASL mechanism"),
            (Some(RDKafkaErrorCode::SSL), "SSL handshake failed: error:0A000086:SSL routines::certificate verify failed"),
        ];
        for (code, reason) in refusals {
            assert!(is_refusal(code, reason), "{reason}");
        }
        let passing = [
            (
                auth,
                "Failed to acquire SASL OAUTHBEARER token: no credentials",
            ),
            (
                auth,
                "SASL authentication error: Too many connects (after 3ms in state AUTH_REQ)",
            ),
            (auth, "SaslHandshake request failed: Local: Timed out"),
            (
                Some(RDKafkaErrorCode::AllBrokersDown),
                "1/1 brokers are down",
            ),
            (
                Some(RDKafkaErrorCode::BrokerTransportFailure),
                "Connection refused",
            ),
        ];
        for (code, reason) in passing {
            assert!(!is_refusal(code, reason), "{reason}");
        }
    }
}
