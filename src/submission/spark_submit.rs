//! Submission through Apache Spark's own `spark-submit` (3.3), as kubeflow's Go operator does:
//! the fallback and reference for native submission.
//!
//! [`arguments`] turns the very Spark configuration native submission writes to
//! `spark.properties` ([`properties`](super::properties)) into a spark-submit command line, so
//! both submitters create the driver under the same deterministic pod name, with the same
//! labels (incl. `sparkoperator.k8s.io/submission-id`) and the same dependencies.
//! [`SparkSubmitter::run`] runs that command with bounded time and output.
//!
//! What spark-submit still draws at random, and native submission derives: `spark.app.id` (and
//! so label `spark-app-selector`), the driver Service and ConfigMap names (hence
//! `spark.driver.host`) and the local-dir path.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

use crate::crd::SparkApplication;

use super::assemble::{self, MainApp, Resource};
use super::ctx::Ctx;
use super::error::SubmissionError;
use super::keys::*;
use super::options::SubmitOptions;

/// Prefix of the confs with which spark-submit itself authenticates to the API server.
const SUBMISSION_AUTH_PREFIX: &str = "spark.kubernetes.authenticate.submission.";
const OAUTH_TOKEN_FILE: &str = "spark.kubernetes.authenticate.submission.oauthTokenFile";
const CA_CERT_FILE: &str = "spark.kubernetes.authenticate.submission.caCertFile";
/// Where a pod's service account credentials are mounted.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// Output kept from one run: enough for a stack trace, bounded whatever the child prints.
const OUTPUT_LIMIT: usize = 64 * 1024;
/// Lines of output in an error message (stack frames not counted).
const TAIL_LINES: usize = 20;
/// Longest line of an error message's tail; longer ones are cut.
const TAIL_LINE_CHARS: usize = 500;
/// How long the output readers may lag behind the exit (a grandchild holding the pipes).
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// The spark-submit argument list of attempt `attempt` of `app`, connecting to `master`
/// (`k8s://https://host:port`; pass `opts.master_url` for `spark.master` in the driver's
/// `spark.properties` to be what native submission writes).
///
/// Every entry of [`properties`](super::properties) becomes `--conf key=value`, except:
/// - `spark.master`, `spark.submit.deployMode`, `spark.app.name`: given as `--master`,
///   `--deploy-mode cluster` and `--name` (flags, as kubeflow passes them);
/// - what spark-submit 3.3 computes itself and overwrites anyway: `spark.app.id` (a random
///   `spark-<uuid>` in `KubernetesClientApplication`), `spark.kubernetes.submitInDriver` and
///   `spark.kubernetes.resource.type` (driver feature steps), `spark.driver.host` (removed in
///   cluster mode, then set to the driver Service it names);
/// - `spark.jars` without the main jar of a Java/Scala app, which spark-submit appends itself
///   (passing it would list it twice), and an empty `spark.submit.pyFiles` (always written);
/// - `spark.kubernetes.authenticate.submission.*` from the app: how the operator authenticates
///   is [`SparkSubmitter`]'s business, not the app's.
///
/// Kept although they equal Spark's defaults (a no-op): driver and block manager ports and
/// `spark.kubernetes.memoryOverheadFactor`. `spark.kubernetes.driver.pod.name` gives the
/// deterministic driver name; `spark.archives` is what `--archives` sets, `#alias` included.
/// `spark.kubernetes.submission.waitAppCompletion=false` comes last so no sparkConf can make
/// spark-submit wait for the application. Then the main file and `spec.arguments`.
pub fn arguments(
    app: &SparkApplication,
    attempt: u32,
    opts: &SubmitOptions,
    master: &str,
) -> Result<Vec<String>, SubmissionError> {
    let (app, _) = super::effective(app, opts)?;
    let app = &app;
    let ctx = Ctx::new(app, attempt, opts)?;
    let main = MainApp::of(&ctx)?;
    check_main_file(&ctx, &main)?;
    let conf = assemble::build(&ctx, &main)?;

    let mut args: Vec<String> = vec![
        "--master".into(),
        master.into(),
        "--deploy-mode".into(),
        "cluster".into(),
        "--name".into(),
        ctx.name.into(),
    ];
    // spark-submit picks PythonRunner/RRunner from the file's extension.
    if main.resource == Resource::Java {
        args.extend(["--class".into(), main.main_class.clone()]);
    }
    for (key, value) in &conf {
        let value = match key.as_str() {
            MASTER | DEPLOY_MODE | APP_NAME | APP_ID | SUBMIT_IN_DRIVER | RESOURCE_TYPE
            | DRIVER_HOST | WAIT_APP_COMPLETION => continue,
            k if k.starts_with(SUBMISSION_AUTH_PREFIX) => continue,
            JARS if main.resource == Resource::Java => {
                let mut jars: Vec<&str> = value
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .collect();
                if jars.last() == Some(&main.main_file.as_str()) {
                    jars.pop();
                }
                jars.join(",")
            }
            _ => value.clone(),
        };
        if value.is_empty() && matches!(key.as_str(), JARS | PY_FILES) {
            continue;
        }
        args.extend(["--conf".into(), format!("{key}={value}")]);
    }
    args.extend([
        "--conf".into(),
        format!("{WAIT_APP_COMPLETION}=false"),
        main.main_file.clone(),
    ]);
    args.extend(app.spec.arguments.iter().cloned());
    Ok(args)
}

/// spark-submit decides how to run the main file by its extension (`.py` Python, `.R`/`.r`
/// R, else a jar): refuse a file it would run differently from `spec.type`.
fn check_main_file(ctx: &Ctx<'_>, main: &MainApp) -> Result<(), SubmissionError> {
    let file = main.main_file.as_str();
    let runs_as = if file.ends_with(".py") {
        Resource::Python
    } else if file.ends_with(".R") || file.ends_with(".r") {
        Resource::R
    } else {
        Resource::Java
    };
    if runs_as == main.resource {
        return Ok(());
    }
    let reason = match main.resource {
        Resource::Python => "spark-submit runs a Python app only from a file ending in .py",
        Resource::R => "spark-submit runs an R app only from a file ending in .R",
        Resource::Java => {
            "spark-submit would run this file as Python or R, not as a Java/Scala jar"
        }
    };
    Err(SubmissionError::Invalid {
        app: ctx.app_ref.clone(),
        field: "spec.mainApplicationFile".into(),
        value: main.main_file.clone(),
        reason: reason.into(),
    })
}

/// How the spark-submit child authenticates to the API server: files only, never a token on
/// the command line (it would show in `ps` and in Spark's logged command).
///
/// Spark copies these two confs (paths, not contents) into the driver's `spark.properties`,
/// where the driver ignores them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubmitAuth {
    /// Bearer token file (`spark.kubernetes.authenticate.submission.oauthTokenFile`), read by
    /// each spark-submit when it starts, so a rotated service account token is picked up.
    pub token_file: PathBuf,
    /// CA bundle of the API server (`...submission.caCertFile`); `None`: the JVM's trust store.
    pub ca_cert_file: Option<PathBuf>,
}

impl SubmitAuth {
    /// The operator pod's own service account (token and CA under [`SERVICE_ACCOUNT_DIR`]).
    pub fn service_account() -> Self {
        let dir = Path::new(SERVICE_ACCOUNT_DIR);
        Self {
            token_file: dir.join("token"),
            ca_cert_file: Some(dir.join("ca.crt")),
        }
    }

    fn confs(&self) -> Vec<String> {
        let mut args = vec![
            "--conf".into(),
            format!("{OAUTH_TOKEN_FILE}={}", self.token_file.display()),
        ];
        if let Some(ca) = &self.ca_cert_file {
            args.extend(["--conf".into(), format!("{CA_CERT_FILE}={}", ca.display())]);
        }
        args
    }
}

/// Runs `$SPARK_HOME/bin/spark-submit` (Spark 3.3; Java from `JAVA_HOME` or `PATH`).
#[derive(Clone, Debug)]
pub struct SparkSubmitter {
    /// A Spark distribution (or pyspark's package folder): has `bin/spark-submit` and `jars/`.
    pub spark_home: PathBuf,
    /// The whole run, JVM start included (a few seconds); the child is killed past it.
    pub timeout: Duration,
    pub kubeconfig_auth: SubmitAuth,
}

/// Why a spark-submit run did not submit the app. Messages carry the end of its output, for
/// the app's status and Events.
#[derive(Debug, thiserror::Error)]
pub enum SparkSubmitError {
    #[error("cannot start {}: {source}", program.display())]
    Spawn {
        program: PathBuf,
        source: std::io::Error,
    },

    #[error("waiting for spark-submit: {0}")]
    Wait(std::io::Error),

    #[error("spark-submit failed ({status}):\n{tail}")]
    Failed {
        status: ExitStatus,
        /// The last lines of its output, stack frames left out.
        tail: String,
        /// Its output (stdout and stderr interleaved by line), the last 64 KiB.
        output: String,
    },

    #[error(
        "spark-submit did not finish within {timeout:?} and was killed; its output ended with:\n{tail}"
    )]
    TimedOut {
        timeout: Duration,
        tail: String,
        output: String,
    },

    #[error("spark-submit was cancelled")]
    Cancelled,
}

impl SparkSubmitError {
    /// The end of spark-submit's output, when it ran.
    pub fn tail(&self) -> Option<&str> {
        match self {
            Self::Failed { tail, .. } | Self::TimedOut { tail, .. } => Some(tail),
            _ => None,
        }
    }
}

impl SparkSubmitter {
    pub fn program(&self) -> PathBuf {
        self.spark_home.join("bin/spark-submit")
    }

    /// Runs spark-submit with `args` (from [`arguments`]) and the authentication confs.
    ///
    /// The child gets its own process group, killed whole on timeout, on `cancel`, or when
    /// this future is dropped: spark-submit is a shell script that starts a launcher JVM
    /// before `exec`-ing the real one, and killing only the script would leave a JVM behind.
    pub async fn run(
        &self,
        args: &[String],
        cancel: CancellationToken,
    ) -> Result<(), SparkSubmitError> {
        let program = self.program();
        let mut child = Command::new(&program)
            // Skips pyspark's find-spark-home (a Python interpreter run) in bin/spark-submit.
            .env("SPARK_HOME", &self.spark_home)
            // Not a file, so fabric8's auto-configuration reads no kubeconfig: the child
            // authenticates exactly as `kubeconfig_auth` says, whatever the operator's env has.
            .env("KUBECONFIG", "/dev/null")
            .args(self.kubeconfig_auth.confs())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .process_group(0)
            .spawn()
            .map_err(|source| SparkSubmitError::Spawn {
                program: program.clone(),
                source,
            })?;
        let mut group = ProcessGroup::of(child.id());
        tracing::debug!(program = %program.display(), pid = ?child.id(), "spark-submit started");

        let output = Mutex::new(Output::default());
        let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
        // Pipes are read while waiting: a child blocked on a full pipe would never exit.
        let exited = async {
            let drain = async {
                tokio::join!(read_lines(stdout, &output), read_lines(stderr, &output));
            };
            tokio::pin!(drain);
            let mut drained = false;
            let status = loop {
                tokio::select! {
                    status = child.wait() => break status,
                    () = &mut drain, if !drained => drained = true,
                }
            };
            // EOF follows the exit unless something else holds the pipes: do not wait forever.
            if !drained {
                let _ = tokio::time::timeout(DRAIN_GRACE, drain).await;
            }
            status
        };
        let outcome = tokio::select! {
            status = exited => Outcome::Exited(status),
            () = tokio::time::sleep(self.timeout) => Outcome::TimedOut,
            () = cancel.cancelled() => Outcome::Cancelled,
        };
        let status = match outcome {
            Outcome::Exited(status) => status,
            Outcome::TimedOut | Outcome::Cancelled => {
                group.kill();
                let _ = child.wait().await;
                if matches!(outcome, Outcome::Cancelled) {
                    return Err(SparkSubmitError::Cancelled);
                }
                let output = take(&output);
                return Err(SparkSubmitError::TimedOut {
                    timeout: self.timeout,
                    tail: tail(&output),
                    output,
                });
            }
        };
        group.exited();
        let status = status.map_err(SparkSubmitError::Wait)?;
        let output = take(&output);
        if status.success() {
            tracing::debug!(%status, "spark-submit done");
            return Ok(());
        }
        Err(SparkSubmitError::Failed {
            status,
            tail: tail(&output),
            output,
        })
    }
}

enum Outcome {
    Exited(std::io::Result<ExitStatus>),
    TimedOut,
    Cancelled,
}

/// The child's process group, killed on drop unless the child was reaped.
struct ProcessGroup(Option<rustix::process::Pid>);

impl ProcessGroup {
    fn of(pid: Option<u32>) -> Self {
        // Never 0 or 1 (`kill(-1)` would signal every process): a spawned child is neither.
        let pid = pid
            .and_then(|p| i32::try_from(p).ok())
            .filter(|p| *p > 1)
            .and_then(rustix::process::Pid::from_raw);
        Self(pid)
    }

    fn kill(&mut self) {
        if let Some(pid) = self.0.take() {
            // ESRCH (already gone) is fine.
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
    }

    /// The leader was reaped: its pgid may be reused, never signal it again.
    fn exited(&mut self) {
        self.0 = None;
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The last [`OUTPUT_LIMIT`] bytes of output, as whole lines.
#[derive(Default)]
struct Output {
    lines: VecDeque<String>,
    bytes: usize,
}

impl Output {
    fn push(&mut self, line: &[u8]) {
        let line = String::from_utf8_lossy(line)
            .trim_end_matches('\r')
            .to_string();
        self.bytes += line.len() + 1;
        self.lines.push_back(line);
        while self.bytes > OUTPUT_LIMIT {
            match self.lines.pop_front() {
                Some(old) => self.bytes -= old.len() + 1,
                None => break,
            }
        }
    }
}

fn take(output: &Mutex<Output>) -> String {
    let output = match output.lock() {
        Ok(o) => o,
        Err(poisoned) => poisoned.into_inner(),
    };
    let mut text = String::with_capacity(output.bytes);
    for line in &output.lines {
        text.push_str(line);
        text.push('\n');
    }
    text
}

/// Copies a stream into `output` line by line (bounded: a line longer than the limit is split).
async fn read_lines<R: AsyncRead + Unpin>(stream: Option<R>, output: &Mutex<Output>) {
    let Some(mut stream) = stream else { return };
    let mut buf = vec![0u8; 8192];
    let mut partial: Vec<u8> = Vec::new();
    let push = |line: &[u8]| {
        let mut output = match output.lock() {
            Ok(o) => o,
            Err(poisoned) => poisoned.into_inner(),
        };
        output.push(line);
    };
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        partial.extend_from_slice(&buf[..n]);
        let mut start = 0;
        while let Some(i) = partial[start..].iter().position(|b| *b == b'\n') {
            push(&partial[start..start + i]);
            start += i + 1;
        }
        partial.drain(..start);
        if partial.len() > OUTPUT_LIMIT {
            push(&partial);
            partial.clear();
        }
    }
    if !partial.is_empty() {
        push(&partial);
    }
}

/// The last [`TAIL_LINES`] lines of `output` worth reading: JVM stack frames (`\tat ...`,
/// `... 13 more`) and blank lines are left out, so the exception and its causes remain.
fn tail(output: &str) -> String {
    let mut lines: Vec<String> = output
        .lines()
        .rev()
        .filter(|l| {
            let t = l.trim_start();
            !(t.is_empty()
                || (l.starts_with(char::is_whitespace)
                    && (t.starts_with("at ") || (t.starts_with("... ") && t.ends_with(" more")))))
        })
        .take(TAIL_LINES)
        .map(|l| match l.char_indices().nth(TAIL_LINE_CHARS) {
            Some((i, _)) => format!("{}…", &l[..i]),
            None => l.to_string(),
        })
        .collect();
    lines.reverse();
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(yaml: &str) -> SparkApplication {
        yaml_serde::from_str(yaml).expect("test app parses")
    }

    const MASTER: &str = "k8s://https://127.0.0.1:6443";

    fn pairs(args: &[String]) -> Vec<(&str, &str)> {
        args.windows(2)
            .filter(|w| w[0] == "--conf")
            .filter_map(|w| w[1].split_once('='))
            .collect()
    }

    #[test]
    fn scala_app() {
        let pi = app(r#"
apiVersion: sparkoperator.k8s.io/v1beta2
kind: SparkApplication
metadata: {name: spark-pi, namespace: default, uid: 7d0c3a52-5f4b-4c1e-9a57-2b6f0e9c1d11}
spec:
  type: Scala
  mode: cluster
  image: spark:3.3.4
  mainClass: org.apache.spark.examples.SparkPi
  mainApplicationFile: local:///opt/spark/examples/jars/spark-examples.jar
  arguments: ["10"]
  sparkVersion: 3.3.4
  sparkConf:
    spark.app.id: mine
    spark.kubernetes.submission.waitAppCompletion: "true"
    spark.kubernetes.authenticate.submission.oauthTokenFile: /etc/other-token
  deps: {jars: ["local:///opt/extra.jar"]}
  driver: {cores: 1, coreLimit: 1200m, memory: 512m}
  executor: {instances: 2, cores: 1, memory: 512m}
"#);
        let opts = SubmitOptions::default();
        let args = arguments(&pi, 1, &opts, MASTER).expect("arguments");
        let sub = super::super::build(&pi, 1, &opts).expect("build");
        let head: Vec<&str> = args.iter().take(8).map(String::as_str).collect();
        assert_eq!(
            head,
            [
                "--master",
                MASTER,
                "--deploy-mode",
                "cluster",
                "--name",
                "spark-pi",
                "--class",
                "org.apache.spark.examples.SparkPi"
            ]
        );
        let tail: Vec<&str> = args.iter().rev().take(4).map(String::as_str).collect();
        assert_eq!(
            tail,
            [
                "10",
                "local:///opt/spark/examples/jars/spark-examples.jar",
                "spark.kubernetes.submission.waitAppCompletion=false",
                "--conf"
            ]
        );
        let confs = pairs(&args);
        let get = |k: &str| {
            confs
                .iter()
                .filter(|(key, _)| *key == k)
                .map(|(_, v)| *v)
                .collect::<Vec<_>>()
        };
        // The main jar is appended by spark-submit itself.
        assert_eq!(get("spark.jars"), ["local:///opt/extra.jar"]);
        assert_eq!(get("spark.kubernetes.driver.pod.name"), ["spark-pi-driver"]);
        assert_eq!(
            get("spark.kubernetes.driver.label.sparkoperator.k8s.io/submission-id"),
            [sub.submission_id.as_str()]
        );
        assert_eq!(
            get("spark.kubernetes.submission.waitAppCompletion"),
            ["false"]
        );
        for skipped in [
            "spark.master",
            "spark.submit.deployMode",
            "spark.app.name",
            "spark.app.id",
            "spark.kubernetes.submitInDriver",
            "spark.kubernetes.resource.type",
            "spark.driver.host",
            "spark.submit.pyFiles",
            "spark.kubernetes.authenticate.submission.oauthTokenFile",
        ] {
            assert!(get(skipped).is_empty(), "{skipped} passed: {args:?}");
        }
        assert_eq!(get("spark.kubernetes.container.image"), ["spark:3.3.4"]);
        assert_eq!(get("spark.driver.port"), ["7078"]);
        assert_eq!(get("spark.kubernetes.driver.limit.cores"), ["1200m"]);
        // Every other key of spark.properties is passed, exactly once.
        let props = super::super::properties(&pi, 1, &opts).expect("properties");
        let passed: usize = props.keys().map(|k| get(k).len()).sum();
        assert_eq!(passed, props.len() - 9);
    }

    #[test]
    fn python_app_with_archives() {
        let py = app(r#"
apiVersion: sparkoperator.k8s.io/v1beta2
kind: SparkApplication
metadata: {name: py-pi, namespace: jobs, uid: 0b7e8e0a-1111-4c1e-9a57-2b6f0e9c1d11}
spec:
  type: Python
  pythonVersion: "3"
  mode: cluster
  image: spark:3.3.4
  mainApplicationFile: local:///opt/spark/examples/src/main/python/pi.py
  arguments: ["5", "--x=y z"]
  sparkVersion: 3.3.4
  deps:
    archives: ["s3a://bucket/envs/pyenv.tar.gz#environment", "local:///opt/data.tgz"]
    pyFiles: ["local:///opt/lib.zip"]
  driver: {cores: 1, memory: 512m}
  executor: {instances: 1, cores: 1, memory: 512m}
"#);
        let args = arguments(&py, 2, &SubmitOptions::default(), MASTER).expect("arguments");
        assert!(!args.iter().any(|a| a == "--class"), "{args:?}");
        let confs = pairs(&args);
        assert!(confs.contains(&(
            "spark.archives",
            "s3a://bucket/envs/pyenv.tar.gz#environment,local:///opt/data.tgz"
        )));
        assert!(confs.contains(&("spark.submit.pyFiles", "local:///opt/lib.zip")));
        assert!(confs.contains(&("spark.kubernetes.driver.pod.name", "py-pi-driver-2")));
        assert!(confs.contains(&("spark.kubernetes.pyspark.pythonVersion", "3")));
        assert!(confs.contains(&("spark.kubernetes.memoryOverheadFactor", "0.4")));
        assert!(!confs.iter().any(|(k, _)| *k == "spark.jars"), "{args:?}");
        let n = args.len();
        assert_eq!(
            args[n - 3..],
            [
                "local:///opt/spark/examples/src/main/python/pi.py",
                "5",
                "--x=y z"
            ]
        );
    }

    #[test]
    fn main_file_must_match_type() {
        let py = app(r#"
apiVersion: sparkoperator.k8s.io/v1beta2
kind: SparkApplication
metadata: {name: py, namespace: jobs, uid: u1}
spec:
  type: Python
  image: i
  mainApplicationFile: local:///opt/app.zip
  sparkVersion: 3.3.4
  driver: {}
  executor: {}
"#);
        let err = arguments(&py, 1, &SubmitOptions::default(), MASTER).expect_err("refused");
        assert!(
            matches!(&err, SubmissionError::Invalid { field, .. } if field == "spec.mainApplicationFile"),
            "{err}"
        );
    }

    #[test]
    fn service_account_auth() {
        let auth = SubmitAuth::service_account();
        assert_eq!(
            auth.confs(),
            [
                "--conf",
                "spark.kubernetes.authenticate.submission.oauthTokenFile=/var/run/secrets/kubernetes.io/serviceaccount/token",
                "--conf",
                "spark.kubernetes.authenticate.submission.caCertFile=/var/run/secrets/kubernetes.io/serviceaccount/ca.crt",
            ]
        );
    }

    #[test]
    fn tail_skips_stack_frames() {
        let mut out = String::new();
        for i in 0..30 {
            out.push_str(&format!("26/11/23 INFO line {i}\n"));
        }
        out.push_str("Exception in thread \"main\" java.lang.IllegalStateException: boom\n");
        out.push_str("\tat a.b.C.d(C.java:1)\n\t... 13 more\n\n");
        out.push_str("Caused by: java.net.ConnectException: Connection refused\n");
        let t = tail(&out);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), TAIL_LINES);
        assert_eq!(lines[0], "26/11/23 INFO line 12");
        assert!(lines[18].starts_with("Exception in thread"));
        assert!(lines[19].starts_with("Caused by"));
    }

    #[test]
    fn output_is_bounded() {
        let mut out = Output::default();
        let line = "x".repeat(1000);
        for _ in 0..200 {
            out.push(line.as_bytes());
        }
        assert!(out.bytes <= OUTPUT_LIMIT);
        assert_eq!(out.lines.len(), OUTPUT_LIMIT / 1001);
    }

    #[tokio::test]
    async fn run_reports_exit_timeout_and_cancel() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).expect("bin");
        let script = bin.join("spark-submit");
        // Fails after printing (to stderr: one pipe keeps the order); floods stdout or sleeps
        // when asked (the last argument).
        std::fs::write(
            &script,
            "#!/bin/sh\nfor a; do last=$a; done\necho \"args: $*\" >&2\n\
             [ \"$last\" = sleep ] && exec sleep 30\n\
             [ \"$last\" = flood ] && { yes 'a long line of output' | head -n 50000; exit 4; }\n\
             echo 'Exception in thread \"main\" boom' >&2\nprintf '\\tat x.y(Z.java:1)\\n' >&2\nexit 3\n",
        )
        .expect("script");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let submitter = SparkSubmitter {
            spark_home: dir.path().to_path_buf(),
            timeout: Duration::from_secs(20),
            kubeconfig_auth: SubmitAuth {
                token_file: "/t".into(),
                ca_cert_file: None,
            },
        };

        let err = submitter
            .run(&["go".into()], CancellationToken::new())
            .await
            .expect_err("exit 3");
        let SparkSubmitError::Failed { status, tail, .. } = &err else {
            panic!("{err}")
        };
        assert_eq!(status.code(), Some(3));
        assert!(tail.contains("oauthTokenFile=/t go"), "{tail}");
        assert!(
            tail.ends_with("Exception in thread \"main\" boom"),
            "{tail}"
        );

        // Far more than a pipe holds (and than is kept): read while it runs, bounded.
        let err = submitter
            .run(&["flood".into()], CancellationToken::new())
            .await
            .expect_err("exit 4");
        let SparkSubmitError::Failed { status, output, .. } = &err else {
            panic!("{err}")
        };
        assert_eq!(status.code(), Some(4));
        assert!(output.len() <= OUTPUT_LIMIT, "{}", output.len());
        assert!(output.ends_with("a long line of output\n"));

        let quick = SparkSubmitter {
            timeout: Duration::from_millis(300),
            ..submitter.clone()
        };
        let started = std::time::Instant::now();
        let err = quick
            .run(&["sleep".into()], CancellationToken::new())
            .await
            .expect_err("timeout");
        assert!(matches!(err, SparkSubmitError::TimedOut { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));

        let cancel = CancellationToken::new();
        let trigger = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            trigger.cancel();
        });
        let err = submitter
            .run(&["sleep".into()], cancel)
            .await
            .expect_err("cancelled");
        assert!(matches!(err, SparkSubmitError::Cancelled), "{err}");
    }
}
