//! How a Kafka table reaches a secured cluster: `security.protocol`, SASL
//! (`PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512`), TLS certificates, and
//! `auth = 'aws_msk_iam'`, as typed options checked when the job is read.
//!
//! ```sql
//! CREATE TABLE trades (...) WITH (
//!     connector = 'kafka', topic = 'trades', bootstrap_servers = '${BROKERS}',
//!     security.protocol = 'sasl_ssl',
//!     sasl.mechanism = 'SCRAM-SHA-512',
//!     sasl.username = 'engine', sasl.password = '${KAFKA_PASSWORD}',
//!     ssl.ca.location = '/etc/kafka/ca.pem'
//! );
//! ```
//!
//! Each typed option stands for one librdkafka setting; giving both (say
//! `sasl.mechanism` and `properties.sasl.mechanism`) is an error, so the
//! job file never says two things about one setting. Settings that say
//! nothing about security (`properties.*`) still pass through untouched.

use engine_sql::options::quote_list;
use engine_sql::{LineError, Options};

/// The `security.protocol` values, as librdkafka spells them.
const PROTOCOLS: &[&str] = &["plaintext", "ssl", "sasl_plaintext", "sasl_ssl"];

/// The `sasl.mechanism` values taken with a user name and password.
const MECHANISMS: &[&str] = &["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"];

/// The typed security options.
const TYPED_OPTIONS: &[&str] = &[
    "security.protocol",
    "sasl.mechanism",
    "sasl.username",
    "sasl.password",
    "ssl.ca.location",
    "ssl.certificate.location",
    "ssl.key.location",
    "ssl.key.password",
    "auth",
];

/// The librdkafka settings the typed options stand for (with librdkafka's
/// own aliases): once a table uses any typed security option, none of
/// these may come as `properties.*`, which librdkafka would apply on top
/// (say `properties.security.protocol = 'sasl_plaintext'` under a
/// password that must travel over TLS).
const SECURITY_PROPERTIES: &[&str] = &[
    "security.protocol",
    "sasl.mechanism",
    "sasl.mechanisms",
    "sasl.username",
    "sasl.password",
    "ssl.ca.location",
    "ssl.certificate.location",
    "ssl.key.location",
    "ssl.key.password",
];

/// Whether `key` is one of the typed security options (or `aws.region`,
/// which goes with `auth`): what a librdkafka-style setting of the
/// command-line tools is read as, rather than passed through.
pub fn is_typed_option(key: &str) -> bool {
    TYPED_OPTIONS.contains(&key) || key == "aws.region"
}

/// A Kafka table's security settings. Its `Debug` never shows a password.
#[derive(Clone, Default, PartialEq)]
pub struct KafkaSecurity {
    /// `security.protocol` (given, or implied by the other options).
    pub protocol: Option<String>,
    /// `sasl.mechanism` with `sasl.username` and `sasl.password`.
    pub sasl: Option<SaslLogin>,
    /// `ssl.*`: certificate files in PEM.
    pub tls: TlsFiles,
    /// `auth = 'aws_msk_iam'`: the region whose MSK signs the tokens
    /// (`aws.region`; `None` until resolved from the broker's host name or
    /// `AWS_REGION` when the first client is made).
    pub msk_iam: Option<MskIam>,
}

/// A SASL user name and password, for `mechanism`.
#[derive(Clone, PartialEq)]
pub struct SaslLogin {
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    pub mechanism: String,
    /// `sasl.username`.
    pub username: String,
    /// `sasl.password` (never shown).
    pub password: String,
}

/// TLS files: the CA that signs the brokers' certificates, and the client's
/// own certificate and key for mutual TLS.
#[derive(Clone, Default, PartialEq)]
pub struct TlsFiles {
    /// `ssl.ca.location`: the brokers' CA (default: the system's).
    pub ca: Option<String>,
    /// `ssl.certificate.location`: the client certificate.
    pub certificate: Option<String>,
    /// `ssl.key.location`: the client certificate's key.
    pub key: Option<String>,
    /// `ssl.key.password`: the key's password (never shown).
    pub key_password: Option<String>,
}

/// `auth = 'aws_msk_iam'`: SASL/OAUTHBEARER with tokens signed by the AWS
/// credentials of the process (see [`super::msk_iam`]).
#[derive(Clone, PartialEq, Debug)]
pub struct MskIam {
    /// `aws.region`, if given.
    pub region: Option<String>,
}

impl KafkaSecurity {
    /// Reads the security options from `options`, checking that they agree
    /// with each other, that their files can be read, and that no
    /// `properties.*` says the same thing (`properties` are the table's
    /// pass-through settings, without their prefix).
    pub fn from_options(
        options: &mut Options,
        properties: &std::collections::BTreeMap<String, String>,
        table_line: usize,
    ) -> Result<Self, LineError> {
        let line = |options: &Options, key: &str| options.line_of(key, table_line);
        let first_typed = (TYPED_OPTIONS.iter()).find(|typed| options.get(typed).is_some());
        if let Some(first) = first_typed {
            if let Some(setting) = SECURITY_PROPERTIES
                .iter()
                .find(|s| properties.contains_key(**s))
            {
                let at = line(options, &format!("properties.{setting}"));
                return Err((
                    at,
                    format!("`properties.{setting}` would override the typed security options (`{first}`, line {}): set it as a typed option, or give all security settings as `properties.*`", line(options, first)),
                ));
            }
        }
        let protocol = match options.get("security.protocol") {
            None => None,
            Some(p) => {
                let lower = p.to_ascii_lowercase();
                if !PROTOCOLS.contains(&lower.as_str()) {
                    return Err((
                        line(options, "security.protocol"),
                        format!(
                            "option `security.protocol` = '{p}' is not one of {}",
                            quote_list(PROTOCOLS)
                        ),
                    ));
                }
                Some(lower)
            }
        };
        let msk_iam = match options.get("auth") {
            None => None,
            Some(a) if a.eq_ignore_ascii_case("aws_msk_iam") => Some(MskIam {
                region: options.get("aws.region").filter(|r| !r.is_empty()),
            }),
            Some(_) => {
                return Err((
                    line(options, "auth"),
                    "option `auth` is not 'aws_msk_iam', the one it takes (for a user name and password, set `sasl.mechanism`, `sasl.username` and `sasl.password`)".into(),
                ))
            }
        };
        if msk_iam.is_none() && options.get("aws.region").is_some() {
            return Err((
                line(options, "aws.region"),
                "option `aws.region` is for `auth = 'aws_msk_iam'`, which this table does not set"
                    .into(),
            ));
        }
        let sasl = Self::sasl_login(options, table_line)?;
        if let (Some(_), Some(_)) = (&msk_iam, &sasl) {
            return Err((
                line(options, "sasl.mechanism"),
                "`auth = 'aws_msk_iam'` signs in with AWS credentials: drop `sasl.mechanism`, `sasl.username` and `sasl.password`".into(),
            ));
        }
        let tls = TlsFiles {
            ca: readable_file(options, "ssl.ca.location", table_line)?,
            certificate: readable_file(options, "ssl.certificate.location", table_line)?,
            key: readable_file(options, "ssl.key.location", table_line)?,
            key_password: options.get("ssl.key.password"),
        };
        if tls.certificate.is_some() != tls.key.is_some() {
            let (given, missing) = if tls.certificate.is_some() {
                ("ssl.certificate.location", "ssl.key.location")
            } else {
                ("ssl.key.location", "ssl.certificate.location")
            };
            return Err((
                line(options, given),
                format!(
                    "option `{given}` needs `{missing}` too (a client certificate and its key)"
                ),
            ));
        }
        if tls.key_password.is_some() && tls.key.is_none() {
            return Err((
                line(options, "ssl.key.password"),
                "option `ssl.key.password` is the password of `ssl.key.location`, which is not set"
                    .into(),
            ));
        }
        let security = Self {
            protocol,
            sasl,
            tls,
            msk_iam,
        };
        security.check_protocol(options, table_line)?;
        Ok(security)
    }

    /// `sasl.mechanism`, `sasl.username` and `sasl.password`: all three or none.
    fn sasl_login(
        options: &mut Options,
        table_line: usize,
    ) -> Result<Option<SaslLogin>, LineError> {
        let mechanism = options.get("sasl.mechanism");
        let username = options.get("sasl.username");
        let password = options.get("sasl.password");
        let line = |key: &str| options.line_of(key, table_line);
        match (mechanism, username, password) {
            (None, None, None) => Ok(None),
            (Some(m), Some(u), Some(p)) => {
                let upper = m.to_ascii_uppercase();
                if !MECHANISMS.contains(&upper.as_str()) {
                    let hint = if upper == "OAUTHBEARER" || upper.contains("IAM") {
                        " (for Amazon MSK's IAM sign-in, set `auth = 'aws_msk_iam'` instead)"
                    } else {
                        ""
                    };
                    return Err((
                        line("sasl.mechanism"),
                        format!(
                            "option `sasl.mechanism` = '{m}' is not one of {}{hint}",
                            quote_list(MECHANISMS)
                        ),
                    ));
                }
                if u.is_empty() {
                    return Err((
                        line("sasl.username"),
                        "option `sasl.username` is empty".into(),
                    ));
                }
                Ok(Some(SaslLogin {
                    mechanism: upper,
                    username: u,
                    password: p,
                }))
            }
            (m, u, p) => {
                let given = [
                    ("sasl.mechanism", &m),
                    ("sasl.username", &u),
                    ("sasl.password", &p),
                ];
                let missing: Vec<String> = (given.iter())
                    .filter(|(_, v)| v.is_none())
                    .map(|(k, _)| format!("`{k}`"))
                    .collect();
                let first = given.iter().find(|(_, v)| v.is_some()).map(|(k, _)| *k);
                Err((
                    first.map(line).unwrap_or(table_line),
                    format!(
                        "SASL needs `sasl.mechanism`, `sasl.username` and `sasl.password` together: {} missing",
                        missing.join(" and ")
                    ),
                ))
            }
        }
    }

    /// The protocol must carry what the other options ask for: SASL needs a
    /// `sasl_*` protocol, certificates a TLS one. An absent protocol is
    /// implied: `sasl_ssl` with SASL (a password never travels in the clear
    /// unless the table says `sasl_plaintext`), `ssl` with certificates.
    /// (A typed protocol leaves no room for `properties.sasl.*`: see
    /// [`SECURITY_PROPERTIES`].)
    fn check_protocol(&self, options: &Options, table_line: usize) -> Result<(), LineError> {
        let signs_in = self.sasl.is_some() || self.msk_iam.is_some();
        let Some(protocol) = &self.protocol else {
            return Ok(());
        };
        let at = options.line_of("security.protocol", table_line);
        // librdkafka would fall back to GSSAPI (Kerberos), which this build lacks.
        if protocol.starts_with("sasl_") && !signs_in {
            return Err((at, format!("option `security.protocol` = '{protocol}' signs in, but says not how: set `sasl.mechanism`, `sasl.username` and `sasl.password`, or `auth = 'aws_msk_iam'`")));
        }
        if signs_in && !protocol.starts_with("sasl_") {
            return Err((at, format!("option `security.protocol` = '{protocol}' does not sign in, but SASL options are set: use 'sasl_ssl' (or 'sasl_plaintext' on a cluster without TLS)")));
        }
        if self.msk_iam.is_some() && protocol != "sasl_ssl" {
            return Err((at, "`auth = 'aws_msk_iam'` needs `security.protocol = 'sasl_ssl'` (MSK takes IAM sign-in over TLS only)".into()));
        }
        let has_tls_files = self.tls.ca.is_some() || self.tls.certificate.is_some();
        if has_tls_files && !protocol.ends_with("ssl") {
            return Err((at, format!("option `security.protocol` = '{protocol}' is not TLS, but `ssl.*` files are set: use 'ssl' or 'sasl_ssl'")));
        }
        Ok(())
    }

    /// The protocol in force: as given, or implied by the other options.
    pub fn effective_protocol(&self) -> Option<&str> {
        if let Some(p) = &self.protocol {
            return Some(p);
        }
        if self.sasl.is_some() || self.msk_iam.is_some() {
            Some("sasl_ssl")
        } else if self.tls.ca.is_some() || self.tls.certificate.is_some() {
            Some("ssl")
        } else {
            None
        }
    }

    /// The librdkafka settings these options stand for.
    pub fn settings(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if let Some(p) = self.effective_protocol() {
            out.push(("security.protocol", p.to_string()));
        }
        if let Some(login) = &self.sasl {
            out.push(("sasl.mechanism", login.mechanism.clone()));
            out.push(("sasl.username", login.username.clone()));
            out.push(("sasl.password", login.password.clone()));
        }
        if self.msk_iam.is_some() {
            out.push(("sasl.mechanism", "OAUTHBEARER".into()));
        }
        let files = [
            ("ssl.ca.location", &self.tls.ca),
            ("ssl.certificate.location", &self.tls.certificate),
            ("ssl.key.location", &self.tls.key),
            ("ssl.key.password", &self.tls.key_password),
        ];
        for (key, value) in files {
            if let Some(v) = value {
                out.push((key, v.clone()));
            }
        }
        out
    }
}

impl std::fmt::Debug for KafkaSecurity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSecurity")
            .field("protocol", &self.effective_protocol())
            .field("sasl", &self.sasl)
            .field("tls", &self.tls)
            .field("msk_iam", &self.msk_iam)
            .finish()
    }
}

impl std::fmt::Debug for SaslLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaslLogin")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for TlsFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A key's "path" may be the key itself; its password is a secret.
        let hidden = |v: &Option<String>| v.as_ref().map(|_| "***");
        f.debug_struct("TlsFiles")
            .field("ca", &self.ca)
            .field("certificate", &self.certificate)
            .field("key", &hidden(&self.key))
            .field("key_password", &hidden(&self.key_password))
            .finish()
    }
}

/// The path in option `key`, if given, after checking that it can be read:
/// a wrong path fails when the job is read, not at the first connection.
fn readable_file(
    options: &mut Options,
    key: &str,
    table_line: usize,
) -> Result<Option<String>, LineError> {
    let Some(path) = options.get(key) else {
        return Ok(None);
    };
    std::fs::File::open(&path).map_err(|e| {
        // A key's "path" may be the key itself, pasted in: never shown.
        let file = if engine_sql::options::may_be_secret(key) {
            "the file it names".to_string()
        } else {
            format!("`{path}`")
        };
        let message = format!("option `{key}`: cannot read {file}: {e}");
        (options.line_of(key, table_line), message)
    })?;
    Ok(Some(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The security of a table with `with` as its options (after `connector`,
    /// `topic` and `bootstrap_servers`, on lines of their own from line 2).
    fn security(with: &str) -> Result<KafkaSecurity, LineError> {
        let sql = format!(
            "CREATE TABLE t (symbol STRING) WITH (\n connector = 'kafka', topic = 't', bootstrap_servers = 'b:9092',\n{with}\n);\nCREATE TABLE o (symbol STRING) WITH (connector = 'kafka', topic = 'o', bootstrap_servers = 'b:9092');\nINSERT INTO o SELECT symbol FROM t;"
        );
        let job = engine_sql::JobFile::parse("job.sql", &sql, &|_| None).expect("job parses");
        let table = &job.tables[0];
        let mut options = table.options.clone();
        let properties = options.with_prefix("properties.");
        KafkaSecurity::from_options(&mut options, &properties, table.line)
    }

    #[test]
    fn no_security_options_set_nothing() {
        let s = security(" group_id = 'g'").unwrap();
        assert!(s.settings().is_empty());
    }

    #[test]
    fn scram_implies_sasl_ssl_and_hides_the_password() {
        let s = security(
            " sasl.mechanism = 'scram-sha-512', sasl.username = 'u', sasl.password = 'hunter2'",
        )
        .unwrap();
        let settings = s.settings();
        assert!(settings.contains(&("security.protocol", "sasl_ssl".into())));
        assert!(settings.contains(&("sasl.mechanism", "SCRAM-SHA-512".into())));
        assert!(!format!("{s:?}").contains("hunter2"), "{s:?}");
    }

    #[test]
    fn a_partial_login_names_what_is_missing() {
        let (line, message) = security(" sasl.username = 'u'").unwrap_err();
        assert_eq!(line, 3);
        assert!(
            message.contains("`sasl.mechanism` and `sasl.password` missing"),
            "{message}"
        );
    }

    #[test]
    fn sasl_over_a_protocol_that_does_not_sign_in_is_an_error() {
        let (line, message) = security(
            " security.protocol = 'ssl',\n sasl.mechanism = 'PLAIN', sasl.username = 'u', sasl.password = 'p'",
        )
        .unwrap_err();
        assert_eq!(line, 3);
        assert!(message.contains("does not sign in"), "{message}");
        assert!(!message.contains("'p'"), "{message}");
    }

    #[test]
    fn an_unknown_mechanism_points_iam_users_at_auth() {
        let (_, message) = security(
            " sasl.mechanism = 'OAUTHBEARER', sasl.username = 'u', sasl.password = 'secret-pw'",
        )
        .unwrap_err();
        assert!(message.contains("auth = 'aws_msk_iam'"), "{message}");
        assert!(!message.contains("secret-pw"), "{message}");
    }

    #[test]
    fn a_typed_option_and_its_property_twin_are_an_error_at_the_property() {
        let (line, message) = security(
            " sasl.mechanism = 'PLAIN', sasl.username = 'u', sasl.password = 'p',\n properties.sasl.password = 'other'",
        )
        .unwrap_err();
        assert_eq!(line, 4);
        assert!(
            message.contains("`properties.sasl.password` would override"),
            "{message}"
        );
        assert!(!message.contains("other"), "{message}");
        // librdkafka's own spelling of the mechanism, and a protocol the
        // typed options only implied, are caught too.
        for property in [
            "properties.sasl.mechanisms = 'PLAIN'",
            "properties.security.protocol = 'sasl_plaintext'",
        ] {
            let (_, message) =
                security(&format!(" auth = 'aws_msk_iam',\n {property}")).unwrap_err();
            assert!(message.contains("would override"), "{property}: {message}");
        }
        let (_, message) = security(
            " sasl.mechanism = 'PLAIN', sasl.username = 'u', sasl.password = 'p',\n properties.security.protocol = 'sasl_plaintext'",
        )
        .unwrap_err();
        assert!(message.contains("would override"), "{message}");
        // All as properties: passed through as before.
        let s = security(
            " properties.security.protocol = 'sasl_ssl',\n properties.sasl.mechanisms = 'PLAIN'",
        )
        .unwrap();
        assert!(s.settings().is_empty());
    }

    #[test]
    fn a_key_pasted_where_its_path_belongs_is_not_repeated() {
        let (_, message) =
            security(" ssl.key.location = '-----BEGIN PRIVATE KEY----- MIGH'").unwrap_err();
        assert!(
            message.contains("cannot read the file it names"),
            "{message}"
        );
        assert!(!message.contains("MIGH"), "{message}");
    }

    #[test]
    fn msk_iam_takes_oauthbearer_over_tls_only() {
        let s = security(" auth = 'AWS_MSK_IAM', aws.region = 'eu-west-1'").unwrap();
        let settings = s.settings();
        assert!(settings.contains(&("security.protocol", "sasl_ssl".into())));
        assert!(settings.contains(&("sasl.mechanism", "OAUTHBEARER".into())));
        assert_eq!(s.msk_iam.unwrap().region.as_deref(), Some("eu-west-1"));
        let (_, message) =
            security(" auth = 'aws_msk_iam', security.protocol = 'sasl_plaintext'").unwrap_err();
        assert!(message.contains("over TLS only"), "{message}");
        let (_, message) = security(" aws.region = 'eu-west-1'").unwrap_err();
        assert!(message.contains("`auth = 'aws_msk_iam'`"), "{message}");
        let (_, message) = security(
            " auth = 'aws_msk_iam', sasl.mechanism = 'PLAIN', sasl.username = 'u', sasl.password = 'p'",
        )
        .unwrap_err();
        assert!(message.contains("drop `sasl.mechanism`"), "{message}");
    }

    #[test]
    fn certificate_files_must_exist_and_come_in_pairs() {
        let (line, message) = security(" ssl.ca.location = '/no/such/ca.pem'").unwrap_err();
        assert_eq!(line, 3);
        assert!(
            message.contains("cannot read `/no/such/ca.pem`"),
            "{message}"
        );
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("client.pem");
        std::fs::write(&cert, "x").unwrap();
        let (_, message) =
            security(&format!(" ssl.certificate.location = '{}'", cert.display())).unwrap_err();
        assert!(
            message.contains("needs `ssl.key.location` too"),
            "{message}"
        );
        let s = security(&format!(" ssl.ca.location = '{}'", cert.display())).unwrap();
        assert_eq!(s.effective_protocol(), Some("ssl"));
        let (_, message) = security(&format!(
            " security.protocol = 'sasl_plaintext', ssl.ca.location = '{}',\n sasl.mechanism = 'PLAIN', sasl.username = 'u', sasl.password = 'p'",
            cert.display()
        ))
        .unwrap_err();
        assert!(message.contains("is not TLS"), "{message}");
    }

    #[test]
    fn an_unknown_protocol_is_an_error_listing_the_known_ones() {
        let (_, message) = security(" security.protocol = 'tls'").unwrap_err();
        assert!(message.contains("'sasl_ssl'"), "{message}");
        let (_, message) = security(" security.protocol = 'SASL_SSL'").unwrap_err();
        assert!(message.contains("says not how"), "{message}");
        let (_, message) =
            security(" security.protocol = 'SASL_SSL',\n properties.sasl.mechanism = 'PLAIN'")
                .unwrap_err();
        assert!(message.contains("would override"), "{message}");
    }
}
