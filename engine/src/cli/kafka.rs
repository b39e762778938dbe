//! How the command-line tools (`produce`, `ingest`, `tail`, `ui`) reach a
//! cluster: `--brokers`, plus librdkafka-style client settings for secured
//! clusters, the same names a job file's Kafka table takes:
//!
//! ```text
//! engine tail ohlc_1m -X security.protocol=sasl_ssl -X sasl.mechanism=SCRAM-SHA-512 \
//!     -X sasl.username=reader --kafka-config ~/.config/engine/kafka.properties
//! engine tail ohlc_1m -X auth=aws_msk_iam          # Amazon MSK, IAM sign-in
//! ```
//!
//! A settings file keeps passwords off the command line (and out of `ps`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Args;
use engine::KafkaClientOptions;

/// The cluster a tool talks to, and how it signs in. Its `Debug` shows
/// setting names only: values can be passwords.
#[derive(Args)]
pub struct KafkaArgs {
    /// Kafka brokers.
    #[arg(long, env = "KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    pub brokers: String,
    /// A client setting, `KEY=VALUE` (repeatable; wins over --kafka-config):
    /// `security.protocol`, `sasl.mechanism`, `sasl.username`,
    /// `sasl.password`, `ssl.ca.location`, `ssl.certificate.location`,
    /// `ssl.key.location`, `ssl.key.password`, `auth=aws_msk_iam` with
    /// `aws.region`, or any other librdkafka setting.
    #[arg(short = 'X', long = "kafka-option", value_name = "KEY=VALUE")]
    pub settings: Vec<String>,
    /// A file of client settings, one `KEY=VALUE` a line (`#` starts a
    /// comment line), with the same names as -X.
    #[arg(long, env = "KAFKA_CONFIG", value_name = "FILE")]
    pub kafka_config: Option<PathBuf>,
}

impl std::fmt::Debug for KafkaArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A setting without `=` may be a password given without its key.
        let keys: Vec<&str> = (self.settings.iter())
            .map(|s| s.split_once('=').map_or("(not KEY=VALUE)", |(k, _)| k))
            .collect();
        f.debug_struct("KafkaArgs")
            .field("brokers", &self.brokers)
            .field("settings", &keys)
            .field("kafka_config", &self.kafka_config)
            .finish()
    }
}

impl KafkaArgs {
    /// The clients' options: the settings file's, then each `-X` over them,
    /// checked as a job's Kafka table is (an error names the setting, its
    /// file and line, and never a value).
    pub fn client(&self) -> anyhow::Result<KafkaClientOptions> {
        // key -> (value, where it came from: the file's line, or 0 for -X)
        let mut settings: BTreeMap<String, (String, usize)> = BTreeMap::new();
        // librdkafka's alias, so that a flag still wins over the file's spelling.
        let named = |key: &str| match key.trim() {
            "sasl.mechanisms" => "sasl.mechanism".to_string(),
            key => key.to_string(),
        };
        if let Some(path) = &self.kafka_config {
            for (key, value, line) in read_settings_file(path)? {
                settings.insert(named(&key), (value, line));
            }
        }
        for setting in &self.settings {
            // Never echoed unless well formed: the text may be a password
            // given without its key.
            let (key, value) = match setting.split_once('=') {
                Some((key, value)) if is_setting_name(key.trim()) => (key, value),
                _ => bail!(
                    "-X: a setting is KEY=VALUE, KEY made of letters, digits, `.`, `_` and `-`"
                ),
            };
            settings.insert(named(key), (value.to_string(), 0));
        }
        let entries = (settings.into_iter()).map(|(key, (value, line))| (key, value, line));
        let at = |line: usize| match (&self.kafka_config, line) {
            (Some(path), 1..) => format!("{}:{line}", path.display()),
            _ => "-X".to_string(),
        };
        let client = KafkaClientOptions::from_settings(&self.brokers, entries).map_err(
            |(line, message)| anyhow::anyhow!("Kafka client settings, {}: {message}", at(line)),
        )?;
        client
            .validate()
            .map_err(|(key, message)| anyhow::anyhow!("Kafka client setting `{key}`: {message}"))?;
        Ok(client)
    }
}

/// Whether `key` can be a librdkafka setting's name (so it holds no value).
fn is_setting_name(key: &str) -> bool {
    !key.is_empty() && (key.bytes()).all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// The `KEY=VALUE` lines of a settings file, with their line numbers.
fn read_settings_file(path: &Path) -> anyhow::Result<Vec<(String, String, usize)>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading Kafka client settings from {}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        // The line is never echoed: it may hold a password (pasted on its
        // own, or after a separator other than `=`).
        let Some((key, value)) = line.split_once('=') else {
            bail!("{}:{line_no}: a setting is KEY=VALUE", path.display());
        };
        let key = key.trim();
        if !is_setting_name(key) {
            bail!(
                "{}:{line_no}: a setting is KEY=VALUE, KEY made of letters, digits, `.`, `_` and `-`",
                path.display()
            );
        }
        out.push((key.to_string(), value.trim().to_string(), line_no));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tool(settings: &[&str], file: Option<&str>) -> (KafkaArgs, Option<tempfile::NamedTempFile>) {
        let file = file.map(|text| {
            let mut f = tempfile::NamedTempFile::new().unwrap();
            std::io::Write::write_all(&mut f, text.as_bytes()).unwrap();
            f
        });
        let args = KafkaArgs {
            brokers: "b-1.example:9096".into(),
            settings: settings.iter().map(|s| s.to_string()).collect(),
            kafka_config: file.as_ref().map(|f| f.path().to_path_buf()),
        };
        (args, file)
    }

    #[test]
    fn settings_file_and_flags_make_one_secured_client() {
        let (args, _file) = tool(
            &["sasl.password=from-the-flag", "client.id=tail-1"],
            Some("# SCRAM\nsecurity.protocol = SASL_SSL\nsasl.mechanisms=SCRAM-SHA-512\nsasl.username=reader\nsasl.password=from-the-file\n"),
        );
        let client = args.client().unwrap();
        assert_eq!(client.security.effective_protocol(), Some("sasl_ssl"));
        let login = client.security.sasl.as_ref().unwrap();
        assert_eq!(
            (login.mechanism.as_str(), login.username.as_str()),
            ("SCRAM-SHA-512", "reader")
        );
        assert_eq!(login.password, "from-the-flag", "-X wins over the file");
        assert_eq!(
            client.properties.get("client.id").map(String::as_str),
            Some("tail-1")
        );
        assert_eq!(client.bootstrap_servers, "b-1.example:9096");
    }

    #[test]
    fn errors_name_the_setting_and_its_line_never_the_secret() {
        let (args, _file) = tool(&[], Some("security.protocol=sasl_ssl\nsasl.mechanism=SCRAM-SHA-1\nsasl.username=u\nsasl.password=hunter2\n"));
        let err = args.client().unwrap_err().to_string();
        assert!(
            err.contains(":2:") && err.contains("sasl.mechanism"),
            "{err}"
        );
        assert!(!err.contains("hunter2"), "{err}");

        let (args, _file) = tool(&[], Some("security.protocol=sasl_ssl\nhunter2\n"));
        let err = args.client().unwrap_err().to_string();
        assert!(err.contains(":2:") && !err.contains("hunter2"), "{err}");

        // A separator other than `=` would put part of the secret in the key.
        let (args, _file) = tool(
            &[],
            Some("security.protocol=sasl_ssl\nsasl.password: hunter2=x\n"),
        );
        let err = args.client().unwrap_err().to_string();
        assert!(err.contains(":2:") && !err.contains("hunter2"), "{err}");

        let (args, _) = tool(&["hunter2"], None);
        let err = args.client().unwrap_err().to_string();
        assert!(err.starts_with("-X:") && !err.contains("hunter2"), "{err}");
        assert!(!format!("{args:?}").contains("hunter2"));

        let (args, _) = tool(
            &[
                "sasl.mechanism=SCRAM-SHA-1",
                "sasl.username=u",
                "sasl.password=p",
            ],
            None,
        );
        let err = args.client().unwrap_err().to_string();
        assert!(
            err.contains("-X") && err.contains("sasl.mechanism"),
            "{err}"
        );

        let (args, _) = tool(&["sasl.pasword=hunter2"], None);
        let err = args.client().unwrap_err().to_string();
        assert!(
            err.contains("sasl.pasword") && !err.contains("hunter2"),
            "{err}"
        );

        let (args, _) = tool(&["bootstrap.servers=elsewhere:9092"], None);
        assert!(args.client().unwrap_err().to_string().contains("--brokers"));

        let (args, _) = tool(
            &["auth=aws_msk_iam", "security.protocol=sasl_plaintext"],
            None,
        );
        let err = args.client().unwrap_err().to_string();
        assert!(err.contains("sasl_ssl"), "{err}");
        let shown = format!(
            "{:?}",
            super::KafkaArgs {
                settings: vec!["sasl.password=hunter2".into()],
                ..args
            }
        );
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
