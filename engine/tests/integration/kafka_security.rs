//! Kafka security against real brokers of the test's own: a job over mutual
//! TLS (a CA made for the test) checked against an independent fold; a
//! refused certificate and a wrong SASL password as clear, fast errors with
//! no secret in any output; and MSK IAM tokens checked against AWS's own
//! signer at a fixed clock with fixed credentials.

use crate::common;

use std::collections::BTreeMap;

use common::*;

/// A source and a sink on one broker, both with `security` (option lines
/// with `${VAR}`s), computing 1-minute candles of `${TRADES_TOPIC}` into
/// `${OHLC_TOPIC}`.
fn job(security: &str) -> String {
    format!(
        "CREATE TABLE trades (
    symbol TEXT NOT NULL, price DOUBLE NOT NULL, size DOUBLE NOT NULL, ts TIMESTAMP NOT NULL,
    WATERMARK FOR ts AS ts - INTERVAL '2' SECOND
) WITH (
    connector = 'kafka', bootstrap_servers = '${{BROKERS}}', topic = '${{TRADES_TOPIC}}',
    group_id = '${{GROUP}}', format = 'json',
{security}
);
CREATE TABLE candles (
    symbol TEXT, window_start TIMESTAMP, window_end TIMESTAMP,
    open DOUBLE, high DOUBLE, low DOUBLE, close DOUBLE, volume DOUBLE, trades BIGINT
) WITH (
    connector = 'kafka', bootstrap_servers = '${{BROKERS}}', topic = '${{OHLC_TOPIC}}',
    key_field = 'symbol', format = 'json',
{security}
);
INSERT INTO candles
SELECT symbol, window_start, window_end, first_value(price ORDER BY ts) AS open,
       max(price) AS high, min(price) AS low, last_value(price ORDER BY ts) AS close,
       sum(size) AS volume, count(*) AS trades
FROM trades GROUP BY symbol, TUMBLE(ts, INTERVAL '1' MINUTE);
"
    )
}

const MUTUAL_TLS: &str = "    ssl.ca.location = '${CA}',
    ssl.certificate.location = '${CERT}',
    ssl.key.location = '${KEY}',
    ssl.key.password = '${KEY_PASSWORD}'";

/// Runs `engine ARGS` with `vars` and `RUST_LOG=trace` (every log line the
/// engine can write); whether it succeeded, and all it printed.
fn engine_traced(args: &[&str], vars: &BTreeMap<&str, String>) -> (bool, String) {
    let vars = vars.iter().map(|(k, v)| (*k, v.as_str()));
    let out = engine_at_root(args, vars.chain([("RUST_LOG", "trace"), ("NO_COLOR", "1")]));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Every file under `dir`, read as (lossy) text.
fn text_under(dir: &std::path::Path) -> String {
    files_under(dir)
        .iter()
        .map(|f| String::from_utf8_lossy(&std::fs::read(f).unwrap()).into_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_over_mutual_tls_matches_an_independent_fold_and_keeps_its_secrets() {
    init_logs();
    let broker = TlsBroker::start();
    let client = broker.client();
    let (trades_topic, ohlc_topic) = (unique("trades"), unique("ohlc"));
    let dlq = format!("{trades_topic}.dlq");
    create_topics_on(&client, &[(&trades_topic, 2), (&dlq, 1), (&ohlc_topic, 1)]).await;
    let trades = generate_trades(5, 12_000, 4, 1_763_682_600_000, 50);
    produce_on(&client, &trades_topic, &trade_records(&trades)).await;

    let dir = tempfile::tempdir().unwrap();
    let job_path = dir.path().join("tls.sql");
    std::fs::write(&job_path, job(MUTUAL_TLS)).unwrap();
    let state = dir.path().join("state");
    let mut vars = BTreeMap::from([
        ("BROKERS", broker.addr.clone()),
        ("TRADES_TOPIC", trades_topic.clone()),
        ("OHLC_TOPIC", ohlc_topic.clone()),
        ("GROUP", unique("group")),
        ("CA", broker.file("ca.pem")),
        ("CERT", broker.file("client.pem")),
        ("KEY", broker.file("client.key")),
        ("KEY_PASSWORD", CLIENT_KEY_PASSWORD.to_string()),
    ]);
    let job_arg = job_path.to_str().unwrap();
    let (ok, plan) = engine_traced(&["check", job_arg], &vars);
    assert!(ok, "{plan}");
    let state_arg = state.to_str().unwrap();
    let (ok, log) = engine_traced(
        &["run", job_arg, "--bounded", "--state-dir", state_arg],
        &vars,
    );
    assert!(ok, "the job runs over TLS: {log}");

    // Every candle, as a plain fold of the trades computes it.
    let (_, candles) = topic_candles_on(&client, &ohlc_topic);
    let expected = fold_windows(&trades, 60_000, 60_000);
    assert!(expected.len() > 20, "{} windows", expected.len());
    assert_eq!(
        candles.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
    for (key, want) in &expected {
        let got = &candles[key];
        for (field, value) in [
            ("open", want.open),
            ("high", want.high),
            ("low", want.low),
            ("close", want.close),
        ] {
            assert_eq!(got[field].as_f64(), Some(value), "{key:?} {field}");
        }
        assert!(
            close_to(got["volume"].as_f64().unwrap(), want.volume, 1e-12),
            "{key:?}"
        );
        assert_eq!(got["trades"].as_i64(), Some(want.trades), "{key:?}");
    }

    // The key's password is in no plan, log line or checkpoint.
    for (what, text) in [
        ("plan", &plan),
        ("log", &log),
        ("state dir", &text_under(&state)),
    ] {
        assert!(
            !text.contains(CLIENT_KEY_PASSWORD),
            "the key's password is in the {what}"
        );
    }
    assert!(!text_under(&state).is_empty(), "the run checkpointed");

    // The job's own candle page (`--ui`, no --ui-topic: the job's one Kafka
    // output) reads the candles back over the same mutual TLS as the job.
    let page_log = dir.path().join("page.log");
    let mut page = spawn_engine(
        &[
            "run",
            job_arg,
            "--state-dir",
            state_arg,
            "--ui",
            "127.0.0.1:0",
        ],
        &vars,
        &page_log,
    );
    let symbol = expected.keys().next().unwrap().0.clone();
    let want: Vec<_> = (expected.iter())
        .filter(|((s, _), _)| *s == symbol)
        .map(|((_, start), c)| (*start, c))
        .collect();
    let drawn = page_candles(&symbol, want.len(), &page_log).await;
    for ((start, c), got) in want.iter().zip(&drawn) {
        let got_ohlc = ["start", "open", "high", "low", "close"].map(|k| got[k].as_f64());
        let want_ohlc = [*start as f64, c.open, c.high, c.low, c.close].map(Some);
        assert_eq!(got_ohlc, want_ohlc, "the page's candle at {start}");
        assert_eq!(got["trades"].as_i64(), Some(c.trades), "{start}");
    }
    assert!(page.try_wait().unwrap().is_none(), "the job still runs");
    drop(page);
    let page_log = std::fs::read_to_string(&page_log).unwrap();
    assert!(!page_log.contains(CLIENT_KEY_PASSWORD), "{page_log}");

    // A CA that did not sign the broker's certificate: refused at once,
    // with librdkafka's reason, not after a 30 s wait for metadata.
    vars.insert("CA", broker.file("other-ca.pem"));
    vars.insert("GROUP", unique("group"));
    let (ok, log) = engine_traced(&["run", job_arg, "--bounded", "--no-checkpoints"], &vars);
    assert!(!ok, "a wrong CA must fail");
    assert!(log.contains("the brokers refused this client"), "{log}");
    assert!(log.contains("certificate verify failed"), "{log}");
    assert!(!log.contains(CLIENT_KEY_PASSWORD), "{log}");
}

/// The candles of `symbol` on the page whose process logs to `log`, once it
/// has `count` of them (up to a minute).
async fn page_candles(symbol: &str, count: usize, log: &std::path::Path) -> Vec<serde_json::Value> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut last = String::new();
    loop {
        let printed = std::fs::read_to_string(log).unwrap_or_default();
        // "live candles of `TOPIC` on http://ADDR/"
        let addr = (printed.lines().find(|l| l.starts_with("live candles of")))
            .and_then(|l| l.split("http://").nth(1))
            .and_then(|a| a.trim_end_matches('/').parse::<std::net::SocketAddr>().ok());
        if let Some(addr) = addr {
            let (status, body) = http_get(addr, &format!("/api/candles?symbol={symbol}")).await;
            assert_eq!(status, 200, "{body}");
            let candles: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
            if candles.len() >= count {
                return candles;
            }
            last = body;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the page did not show {count} candles of {symbol}: {last}\n{printed}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[test]
fn the_tools_reach_a_tls_cluster_with_x_settings_or_a_settings_file() {
    let broker = TlsBroker::start();
    let dir = tempfile::tempdir().unwrap();
    let settings = dir.path().join("kafka.properties");
    std::fs::write(
        &settings,
        format!(
            "# the test's mutual TLS\nssl.ca.location = {}\nssl.certificate.location={}\n\nssl.key.location={}\nssl.key.password={CLIENT_KEY_PASSWORD}\n",
            broker.file("ca.pem"),
            broker.file("client.pem"),
            broker.file("client.key")
        ),
    )
    .unwrap();
    let settings_arg = settings.to_str().unwrap();
    let topic = unique("trades");
    let feed = [
        "--count",
        "600",
        "--speed",
        "max",
        "--seed",
        "17",
        "--symbols",
        "5",
        "--start",
        "2025-11-20T14:30:00Z",
    ];
    let no_vars = BTreeMap::new();

    // `engine produce` over TLS, signed in by the settings file; it creates the topic.
    let produce = [
        &["produce", "--topic", &topic, "--partitions", "2"][..],
        &["--brokers", &broker.addr, "--kafka-config", settings_arg],
        &feed,
    ]
    .concat();
    let (ok, log) = engine_traced(&produce, &no_vars);
    assert!(ok, "produce over TLS: {log}");
    assert!(!log.contains(CLIENT_KEY_PASSWORD), "{log}");
    // The same feed to a file is what the topic must hold, read by the test's own client.
    let file = dir.path().join("feed.jsonl");
    let to_file = [&["produce", "--to-file", file.to_str().unwrap()][..], &feed].concat();
    let (ok, log) = engine_traced(&to_file, &no_vars);
    assert!(ok, "{log}");
    let mut expected: Vec<String> = (std::fs::read_to_string(&file).unwrap().lines())
        .map(str::to_string)
        .collect();
    expected.sort();
    assert_eq!(expected.len(), 600);
    let mut on_topic: Vec<String> = (read_all_on(&broker.client(), &topic).into_iter())
        .map(|r| String::from_utf8(r.payload).unwrap())
        .collect();
    on_topic.sort();
    assert_eq!(on_topic, expected, "the topic holds the feed");

    // `engine tail` over TLS, signed in by -X settings alone.
    let x = [
        format!("ssl.ca.location={}", broker.file("ca.pem")),
        format!("ssl.certificate.location={}", broker.file("client.pem")),
        format!("ssl.key.location={}", broker.file("client.key")),
        format!("ssl.key.password={CLIENT_KEY_PASSWORD}"),
    ];
    let mut tail = vec![
        "tail",
        &topic,
        "--from-beginning",
        "--exit-at-end",
        "--format",
        "json",
    ];
    tail.extend(["--brokers", &broker.addr]);
    for setting in &x {
        tail.extend(["-X", setting.as_str()]);
    }
    let out = engine_at_root(&tail, [("RUST_LOG", "trace")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains(CLIENT_KEY_PASSWORD), "{stderr}");
    let mut tailed: Vec<String> = (String::from_utf8(out.stdout).unwrap().lines())
        .map(str::to_string)
        .collect();
    tailed.sort();
    assert_eq!(tailed, expected, "tail prints every record once");

    // -X wins over the file: a CA that did not sign the broker is refused at
    // once with librdkafka's reason, and the key's password is in no output.
    let other_ca = format!("ssl.ca.location={}", broker.file("other-ca.pem"));
    let wrong = [
        &["tail", &topic, "--exit-at-end", "--brokers", &broker.addr][..],
        &["--kafka-config", settings_arg, "-X", &other_ca],
    ]
    .concat();
    let started = std::time::Instant::now();
    let (ok, log) = engine_traced(&wrong, &no_vars);
    assert!(!ok, "a wrong CA must fail: {log}");
    assert!(log.contains("the brokers refused this client"), "{log}");
    assert!(log.contains("certificate verify failed"), "{log}");
    assert!(!log.contains(CLIENT_KEY_PASSWORD), "{log}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(25),
        "refused, not timed out"
    );

    // A settings file line that is no setting names its line, not its text.
    std::fs::write(
        &settings,
        format!("security.protocol=ssl\n{CLIENT_KEY_PASSWORD}\n"),
    )
    .unwrap();
    let (ok, log) = engine_traced(&["tail", &topic, "--kafka-config", settings_arg], &no_vars);
    assert!(!ok);
    assert!(log.contains("kafka.properties:2"), "{log}");
    assert!(!log.contains(CLIENT_KEY_PASSWORD), "{log}");
}

#[test]
fn security_options_are_checked_when_the_job_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let vars = BTreeMap::from([
        ("BROKERS", "127.0.0.1:1".to_string()),
        ("TRADES_TOPIC", "t".to_string()),
        ("OHLC_TOPIC", "o".to_string()),
        ("GROUP", "g".to_string()),
        ("PW", "pw-93ac1f0e".to_string()),
    ]);
    let cases = [
        // A typo in a secret option: named, its value not shown.
        (
            "    sasl.mechanism = 'PLAIN', sasl.username = 'u', sasl.pasword = '${PW}'",
            "`sasl.password` missing",
        ),
        ("    ssl.key.pasword = '${PW}'", "unknown option `ssl.key.pasword`"),
        (
            "    sasl.mechanism = 'SCRAM-SHA-256', sasl.username = 'u'",
            "`sasl.password` missing",
        ),
        (
            "    security.protocol = 'plaintext', sasl.mechanism = 'PLAIN', sasl.username = 'u', sasl.password = '${PW}'",
            "does not sign in",
        ),
        ("    ssl.ca.location = '/no/such/ca.pem'", "cannot read `/no/such/ca.pem`"),
        (
            "    sasl.mechanism = 'PLAIN', sasl.username = 'u', sasl.password = '${PW}',\n    properties.sasl.password = '${PW}'",
            "`properties.sasl.password` would override the typed security options",
        ),
        (
            "    sasl.mechanism = 'SCRAM-SHA-512', sasl.username = 'u', sasl.password = '${PW}',\n    properties.security.protocol = 'sasl_plaintext'",
            "`properties.security.protocol` would override",
        ),
        ("    auth = 'aws_msk_iam', security.protocol = 'ssl'", "does not sign in"),
    ];
    for (i, (security, expected)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("case{i}.sql"));
        std::fs::write(&path, job(security)).unwrap();
        let (ok, out) = engine_traced(&["check", path.to_str().unwrap()], &vars);
        assert!(!ok, "case {i} must fail: {out}");
        assert!(
            out.contains(expected),
            "case {i}: expected `{expected}` in: {out}"
        );
        assert!(
            out.contains(&format!("case{i}.sql:")),
            "case {i} names the file: {out}"
        );
        assert!(
            !out.contains("pw-93ac1f0e"),
            "case {i} shows the password: {out}"
        );
    }
}

#[test]
fn a_wrong_sasl_password_is_a_clear_error_without_the_password() {
    let broker = SaslBroker::start();
    let password = "sasl-pw-5d2e8a71c3";
    let dir = tempfile::tempdir().unwrap();
    for mechanism in ["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"] {
        let security = format!(
            "    security.protocol = 'sasl_plaintext', sasl.mechanism = '{mechanism}',
    sasl.username = 'engine', sasl.password = '${{KAFKA_PASSWORD}}'"
        );
        let path = dir.path().join("sasl.sql");
        std::fs::write(&path, job(&security)).unwrap();
        let vars = BTreeMap::from([
            ("BROKERS", broker.addr.clone()),
            ("TRADES_TOPIC", unique("trades")),
            ("OHLC_TOPIC", unique("ohlc")),
            ("GROUP", unique("group")),
            ("KAFKA_PASSWORD", password.to_string()),
        ]);
        let args = [
            "run",
            path.to_str().unwrap(),
            "--bounded",
            "--no-checkpoints",
        ];
        let (ok, log) = engine_traced(&args, &vars);
        assert!(!ok, "{mechanism}: an unknown login must fail: {log}");
        assert!(
            log.contains("the brokers refused this client"),
            "{mechanism}: {log}"
        );
        assert!(
            log.to_ascii_lowercase().contains("sasl"),
            "{mechanism}: {log}"
        );
        assert!(
            !log.contains(password),
            "{mechanism}: the password is in the output: {log}"
        );
    }
}

#[test]
fn msk_iam_tokens_are_the_ones_aws_own_signer_makes() {
    let cases = [
        (
            "us-east-1",
            "AKIAIOSFODNN7EXAMPLE",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            None,
            "2026-12-01T10:20:30Z",
        ),
        (
            "eu-west-1",
            "ASIAXAMPLE0000000001",
            "s3cr3t+/=with~odd*chars",
            Some("IQoJb3JpZ2luX2VjE//session+token=="),
            "2028-02-29T23:59:59Z",
        ),
        (
            "ap-southeast-2",
            "ASIAXAMPLE0000000002",
            "k",
            Some("t"),
            "2026-12-31T23:59:59Z",
        ),
    ];
    for (region, key_id, secret_key, session_token, at) in cases {
        let spec = serde_json::json!({
            "region": region, "key_id": key_id, "secret_key": secret_key,
            "session_token": session_token, "at": at,
        });
        let aws = python("msk_iam_token.py", &spec.to_string());
        // The engine's tokens say who made them; for the comparison, the
        // same `User-Agent` as AWS's signer.
        let url = url::Url::parse(aws["url"].as_str().unwrap()).unwrap();
        let agent = url
            .query_pairs()
            .find(|(k, _)| k == "User-Agent")
            .unwrap()
            .1
            .into_owned();
        let credential = object_store::aws::AwsCredential {
            key_id: key_id.into(),
            secret_key: secret_key.into(),
            token: session_token.map(str::to_string),
        };
        let at = chrono::DateTime::parse_from_rfc3339(at).unwrap().to_utc();
        let ours = engine::msk_iam::sign(region, &credential, at, &agent);
        assert_eq!(
            ours.token,
            aws["token"].as_str().unwrap(),
            "{spec}: {}",
            aws["url"]
        );
        assert_eq!(
            ours.expires_ms,
            aws["expiry_ms"].as_i64().unwrap(),
            "{spec}"
        );
    }
}
