//! Processes: the `engine` binary, the services' processes, logs and waiting on state.

use super::*;

/// A name no other test uses: the process, a count within it (the tests of
/// a binary share one process), and random bits against earlier runs of a
/// process with the same id.
pub fn unique(prefix: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!(
        "{prefix}_{}_{n}_{:06x}",
        std::process::id(),
        rand::rng().random::<u32>() & 0xff_ffff
    )
}

/// Held by each test that freezes a shared service (SIGSTOP) for as long as
/// it runs: a frozen broker or S3 server stalls every test that uses it.
/// Those tests are the `faults` binary's, which `cargo test` runs apart
/// from the other binaries; this keeps them apart from each other.
pub fn one_outage_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static OUTAGES: std::sync::Mutex<()> = std::sync::Mutex::new(());
    OUTAGES.lock().unwrap_or_else(|e| e.into_inner())
}

/// Parses and runs job text to the end of its input, `${VAR}` from `env`.
pub async fn run_bounded(
    name: &str,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> engine::RunReport {
    let job = engine::Job::from_text(name, text, env).await.unwrap();
    let stop = engine::CancellationToken::new();
    let options = engine::RunOptions {
        bounded: true,
        ..Default::default()
    };
    job.run(options, stop).await.unwrap()
}

/// Runs the `engine` binary with `args` to completion.
pub fn engine_output<S: AsRef<std::ffi::OsStr>>(
    args: impl IntoIterator<Item = S>,
) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_engine"))
        .args(args)
        .output()
        .expect("the engine binary runs")
}

/// Runs the `engine` binary from the repository root (so `jobs/...` resolves)
/// with extra environment variables, to completion.
pub fn engine_at_root<'a>(
    args: &[&str],
    envs: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_engine"))
        .args(args)
        .current_dir(repo_root())
        .envs(envs)
        .output()
        .expect("the engine binary runs")
}

/// Runs the `engine` binary; whether it succeeded, and its stderr.
pub fn engine(args: &[&str]) -> (bool, String) {
    let out = engine_output(args);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The repository root (job files live in `jobs/`).
///
/// Read when the test runs (cargo sets `CARGO_MANIFEST_DIR` then too): a test
/// binary compiled for another clone sharing the target directory, and found
/// fresh there, would otherwise read that clone's files.
pub fn repo_root() -> std::path::PathBuf {
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(
        || env!("CARGO_MANIFEST_DIR").into(),
        std::path::PathBuf::from,
    );
    manifest.parent().unwrap().to_path_buf()
}

/// Sends the engine's logs to the test output (shown for failing tests).
pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_test_writer()
        .try_init();
}

/// The pid of a service started by scripts/services.sh (`tansu`, `moto`).
pub fn service_pid(name: &str) -> String {
    let dir = std::env::var("ENGINE_SERVICES_DIR")
        .expect("ENGINE_SERVICES_DIR is not set: run the tests with scripts/test.sh");
    std::fs::read_to_string(format!("{dir}/{name}.pid"))
        .unwrap_or_else(|e| {
            panic!("{name}.pid in {dir}: {e} (were the services started by scripts/services.sh?)")
        })
        .trim()
        .to_string()
}

/// Sends `sig` (e.g. `-STOP`) to process `pid`.
pub fn signal(pid: &str, sig: &str) {
    assert!(std::process::Command::new("kill")
        .args([sig, pid])
        .status()
        .unwrap()
        .success());
}

/// Waits up to `deadline` for `done`; fails naming `what` otherwise.
pub fn wait_for(what: &str, deadline: Duration, mut done: impl FnMut() -> bool) {
    let until = std::time::Instant::now() + deadline;
    while !done() {
        assert!(
            std::time::Instant::now() < until,
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Starts `engine ARGS` from the repository root with `vars` set, logging
/// (`RUST_LOG=info`) to `log`.
pub fn spawn_engine(
    args: &[&str],
    vars: &BTreeMap<&str, String>,
    log: &std::path::Path,
) -> Running {
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_engine"))
        .args(args)
        .current_dir(repo_root())
        .envs(vars.iter().map(|(k, v)| (*k, v.as_str())))
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    Running(child)
}

/// A child process that is killed when dropped: a failing test leaves no
/// engine running (and reading the shared broker) behind.
pub struct Running(pub std::process::Child);

impl std::ops::Deref for Running {
    type Target = std::process::Child;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Running {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // Already exited in a passing test: both calls are then harmless.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs a script of `engine/tests/py/` with the services' Python, `input` on stdin; its JSON output.
pub fn python(script: &str, input: &str) -> serde_json::Value {
    use std::io::Write as _;
    let python = std::env::var("SERVICES_PYTHON").expect(
        "SERVICES_PYTHON is not set: run the tests with scripts/test.sh (its venv has sqlglot, boto3, duckdb, the MSK IAM signer)",
    );
    let mut child = std::process::Command::new(python)
        .arg(repo_root().join("engine/tests/py").join(script))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}
