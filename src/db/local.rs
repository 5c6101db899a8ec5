//! A PostgreSQL server started from the machine's own server binaries.
//!
//! Used by `serve` when no `DATABASE_URL` is given (a persistent data directory) and by the test
//! harness (an ephemeral cluster per test binary). Layout of the directory it is given:
//!
//! ```text
//! DIR/pg/             the cluster (PGDATA); the Unix socket lives here too
//! DIR/postgres.log    the server's log
//! ```
//!
//! The server listens on a Unix socket only (`listen_addresses = ''`), with trust authentication
//! on that socket; the socket's directory is the data directory, readable by its owner alone.
//! Postgres refuses to run as root, so when we are root it runs as the `postgres` account that
//! the distribution package creates (`Command::uid/gid`), and the directory is handed to it.
//!
//! A small watchdog process stops the server (and, for ephemeral clusters, removes the
//! directory) if this process dies without stopping it: a panicking test binary or a killed
//! server leaves nothing behind.
//!
//! [`LocalPostgres::shut_down`] and [`LocalPostgres::start_again`] take the server down (fast
//! shutdown) and bring it back on the same data directory and socket: what a database restart
//! looks like to the application (used by the restart test).

use std::ffi::OsStr;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::{geteuid, Gid, Pid, Uid, User};

use super::LocalPgError;

/// The bootstrap superuser's name, fixed whoever runs initdb.
pub const SUPERUSER: &str = "postgres";

/// The port only names the socket file (`.s.PGSQL.5432`); there is no TCP listener.
const PORT: u16 = 5432;

/// Unix socket paths are limited to 107 bytes on Linux.
const MAX_SOCKET_PATH: usize = 107;

const READY_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// How to start the server.
#[derive(Clone, Debug)]
pub struct LocalOptions {
    /// The directory holding the cluster and its log; created if missing.
    pub dir: PathBuf,
    /// Throw-away cluster (tests): durability off for speed, directory removed on stop.
    pub ephemeral: bool,
}

/// A running local server; stopped when dropped.
#[derive(Debug)]
pub struct LocalPostgres {
    dir: PathBuf,
    pgdata: PathBuf,
    bindir: PathBuf,
    account: Option<(Uid, Gid)>,
    ephemeral: bool,
    /// False when we found a server already running on this directory and reuse it: it is
    /// never stopped by us.
    owned: bool,
    processes: Mutex<Processes>,
}

/// The processes of a server we started.
#[derive(Debug, Default)]
struct Processes {
    /// `None` while the server is shut down (or was never ours).
    postgres: Option<Child>,
    watchdog: Option<Child>,
}

impl LocalPostgres {
    /// Initialises the cluster if needed, starts the server and waits until it accepts
    /// connections. Blocking: call it from `spawn_blocking` in async code.
    pub fn start(options: LocalOptions) -> Result<LocalPostgres, LocalPgError> {
        let account = postgres_account()?;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&options.dir)?;
        let dir = options.dir.canonicalize()?;
        let pgdata = dir.join("pg");
        let socket = pgdata.join(format!(".s.PGSQL.{PORT}"));
        if socket.as_os_str().len() > MAX_SOCKET_PATH {
            return Err(data_dir_error(
                &dir,
                "path too long for a Unix socket inside it; choose a shorter data directory",
            ));
        }
        if let Some((uid, gid)) = account {
            hand_over(&dir, uid, gid)?;
        }

        let existing_major = fs::read_to_string(pgdata.join("PG_VERSION"))
            .ok()
            .map(|v| v.trim().to_owned());
        let bindir = find_bindir(existing_major.as_deref())?;
        if existing_major.is_none() {
            initdb(&bindir, &pgdata, account, options.ephemeral)?;
            tracing::info!(data_dir = %pgdata.display(), "initialised a local PostgreSQL cluster");
        } else {
            tracing::info!(data_dir = %pgdata.display(), "reusing the local PostgreSQL cluster");
        }

        let mut server = LocalPostgres {
            dir,
            pgdata,
            bindir,
            account,
            ephemeral: options.ephemeral,
            owned: true,
            processes: Mutex::new(Processes::default()),
        };
        if let Some(pid) = running_postmaster(&server.pgdata) {
            tracing::warn!(
                pid,
                "a PostgreSQL server is already running on this data directory; using it"
            );
            server.owned = false;
            wait_ready(&server.pgdata, None, None)?;
            return Ok(server);
        }
        let pid = server.launch(&mut server.processes())?;
        tracing::info!(pid, socket = %server.pgdata.display(), "local PostgreSQL is ready");
        Ok(server)
    }

    /// Connection settings for `user` on database `dbname`, through the Unix socket.
    pub fn config(&self, user: &str, dbname: &str) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        config
            .host_path(&self.pgdata)
            .port(PORT)
            .user(user)
            .dbname(dbname);
        config
    }

    /// The directory holding the socket (and the cluster).
    pub fn socket_dir(&self) -> &Path {
        &self.pgdata
    }

    /// Stops the server (fast shutdown: open transactions roll back) if this process started
    /// it, and removes an ephemeral directory.
    pub fn stop(&mut self) {
        let processes = self.processes.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Some(child) = processes.postgres.take() {
            stop_postgres(child);
            tracing::info!("local PostgreSQL stopped");
        }
        if let Some(watchdog) = processes.watchdog.take() {
            end_watchdog(watchdog);
        }
        if self.ephemeral {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }

    /// Shuts the server down (fast shutdown: open transactions roll back and every client is
    /// disconnected) and keeps the cluster, so that [`start_again`](Self::start_again) brings
    /// it back on the same data directory and socket. Only for a server this process started.
    /// Blocking.
    pub fn shut_down(&self) -> Result<(), LocalPgError> {
        if !self.owned {
            return Err(LocalPgError::NotOurs);
        }
        let mut processes = self.processes();
        if let Some(child) = processes.postgres.take() {
            stop_postgres(child);
            tracing::info!("local PostgreSQL shut down");
        }
        if let Some(watchdog) = processes.watchdog.take() {
            end_watchdog(watchdog);
        }
        // While the server is down, an ephemeral directory is still removed if we die.
        if self.ephemeral {
            processes.watchdog = spawn_watchdog(None, Some(&self.dir)).ok();
        }
        Ok(())
    }

    /// Starts the server again after [`shut_down`](Self::shut_down), on the same data
    /// directory and socket, and waits until it accepts connections. Does nothing while it
    /// runs. Blocking.
    pub fn start_again(&self) -> Result<(), LocalPgError> {
        if !self.owned {
            return Err(LocalPgError::NotOurs);
        }
        let mut processes = self.processes();
        if processes.postgres.is_some() {
            return Ok(());
        }
        let pid = self.launch(&mut processes)?;
        tracing::info!(pid, "local PostgreSQL started again");
        Ok(())
    }

    fn processes(&self) -> MutexGuard<'_, Processes> {
        self.processes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts `postgres` with its watchdog and waits until it accepts connections.
    fn launch(&self, processes: &mut Processes) -> Result<u32, LocalPgError> {
        let log = self.dir.join("postgres.log");
        let log_file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)?;
        let mut command = Command::new(self.bindir.join("postgres"));
        scrub_secrets(&mut command);
        command
            .arg("-D")
            .arg(&self.pgdata)
            .arg("-k")
            .arg(&self.pgdata)
            .arg("-p")
            .arg(PORT.to_string())
            .args([
                "-c",
                "listen_addresses=",
                "-c",
                "unix_socket_permissions=0700",
            ])
            .current_dir(&self.pgdata)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            // Its own process group: a Ctrl-C in the terminal reaches the server process, which
            // then shuts Postgres down after draining requests, not Postgres directly.
            .process_group(0);
        if self.ephemeral {
            command.args([
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=300",
            ]);
        }
        if let Some((uid, gid)) = self.account {
            command.uid(uid.as_raw()).gid(gid.as_raw());
        }
        let mut child = command.spawn()?;
        let pid = child.id();
        if let Some(old) = processes.watchdog.take() {
            end_watchdog(old);
        }
        processes.watchdog = spawn_watchdog(Some(pid), self.ephemeral.then_some(&self.dir)).ok();
        match wait_ready(&self.pgdata, Some(&mut child), Some(&log)) {
            Ok(()) => {
                processes.postgres = Some(child);
                Ok(pid)
            }
            Err(e) => {
                if matches!(child.try_wait(), Ok(None)) {
                    stop_postgres(child);
                }
                Err(e)
            }
        }
    }
}

/// Waits until the server on `pgdata` accepts connections; with `child`, fails as soon as it
/// exits.
fn wait_ready(
    pgdata: &Path,
    mut child: Option<&mut Child>,
    log: Option<&Path>,
) -> Result<(), LocalPgError> {
    let started = Instant::now();
    let pidfile = pgdata.join("postmaster.pid");
    loop {
        // Line 8 of postmaster.pid is the server's status: "ready" once it accepts connections.
        let ready = fs::read_to_string(&pidfile)
            .ok()
            .and_then(|s| s.lines().nth(7).map(|l| l.trim() == "ready"))
            .unwrap_or(false);
        if ready {
            return Ok(());
        }
        if let Some(child) = child.as_deref_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(LocalPgError::Process {
                    program: "postgres".into(),
                    output: format!(
                        "exited with {status}: {}",
                        log.map(tail).unwrap_or_default()
                    ),
                });
            }
        }
        if started.elapsed() > READY_TIMEOUT {
            return Err(LocalPgError::Timeout(
                READY_TIMEOUT.as_secs(),
                log.map(|l| l.display().to_string()).unwrap_or_default(),
            ));
        }
        sleep(Duration::from_millis(50));
    }
}

/// Fast shutdown of a server we started (SIGINT), forced (SIGQUIT) if it does not stop in time.
fn stop_postgres(mut child: Child) {
    let pid = Pid::from_raw(child.id() as i32);
    let _ = kill(pid, Signal::SIGINT);
    if !wait_exit(&mut child, STOP_TIMEOUT) {
        tracing::warn!("local PostgreSQL did not stop in time; forcing it");
        let _ = kill(pid, Signal::SIGQUIT);
        let _ = child.wait();
    }
}

fn end_watchdog(mut watchdog: Child) {
    let _ = watchdog.kill();
    let _ = watchdog.wait();
}

impl Drop for LocalPostgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The account Postgres must run as: `None` for the current user, or the `postgres` account
/// when we are root.
fn postgres_account() -> Result<Option<(Uid, Gid)>, LocalPgError> {
    if !geteuid().is_root() {
        return Ok(None);
    }
    match User::from_name(SUPERUSER) {
        Ok(Some(user)) if !user.uid.is_root() => Ok(Some((user.uid, user.gid))),
        _ => Err(LocalPgError::NoUnprivilegedUser),
    }
}

/// Gives the directory to the Postgres account and checks that the account can reach it.
fn hand_over(dir: &Path, uid: Uid, gid: Gid) -> Result<(), LocalPgError> {
    for entry in walk(dir)? {
        std::os::unix::fs::lchown(&entry, Some(uid.as_raw()), Some(gid.as_raw()))?;
    }
    for ancestor in dir.ancestors().skip(1) {
        let meta = fs::metadata(ancestor)?;
        let mode = meta.permissions().mode();
        let reachable = mode & 0o001 != 0
            || (meta.uid() == uid.as_raw() && mode & 0o100 != 0)
            || (meta.gid() == gid.as_raw() && mode & 0o010 != 0);
        if !reachable {
            return Err(data_dir_error(
                dir,
                &format!(
                    "the '{SUPERUSER}' account that runs Postgres cannot enter {}; choose a data \
                     directory it can reach (for example under /var/lib or /tmp)",
                    ancestor.display()
                ),
            ));
        }
    }
    Ok(())
}

/// `dir` and everything below it.
fn walk(dir: &Path) -> Result<Vec<PathBuf>, LocalPgError> {
    let mut out = vec![dir.to_path_buf()];
    let mut i = 0;
    while i < out.len() {
        let path = out[i].clone();
        if fs::symlink_metadata(&path)?.is_dir() {
            for entry in fs::read_dir(&path)? {
                out.push(entry?.path());
            }
        }
        i += 1;
    }
    Ok(out)
}

/// Finds a directory holding `postgres` and `initdb`: on PATH, through `pg_config --bindir`, or
/// under /usr/lib/postgresql/*/bin (newest first). With `major`, the version an existing data
/// directory was created by, only binaries of that major version will do.
fn find_bindir(major: Option<&str>) -> Result<PathBuf, LocalPgError> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path));
    }
    if let Ok(output) = Command::new("pg_config").arg("--bindir").output() {
        if output.status.success() {
            let dir = String::from_utf8_lossy(&output.stdout).trim().to_owned();
            candidates.push(PathBuf::from(dir));
        }
    }
    let mut versioned: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            Some((version, e.path().join("bin")))
        })
        .collect();
    versioned.sort_by_key(|(version, _)| std::cmp::Reverse(*version));
    candidates.extend(versioned.into_iter().map(|(_, p)| p));

    let usable: Vec<PathBuf> = candidates
        .into_iter()
        .filter(|d| d.join("postgres").is_file() && d.join("initdb").is_file())
        .collect();
    let Some(major) = major else {
        return usable
            .into_iter()
            .next()
            .ok_or(LocalPgError::BinariesNotFound);
    };
    let mut seen = Vec::new();
    for dir in usable {
        let version = server_major(&dir).unwrap_or_default();
        if version == major {
            return Ok(dir);
        }
        seen.push(version);
    }
    if seen.is_empty() {
        return Err(LocalPgError::BinariesNotFound);
    }
    Err(LocalPgError::DataDir {
        path: "(existing cluster)".into(),
        reason: format!(
            "it was created by PostgreSQL {major}, but only server binaries of version(s) {} \
             were found; install PostgreSQL {major} or use another data directory",
            seen.join(", ")
        ),
    })
}

/// The major version of the server binaries in `bindir` ("postgres (PostgreSQL) 15.4 …" → "15").
fn server_major(bindir: &Path) -> Option<String> {
    let output = Command::new(bindir.join("postgres"))
        .arg("--version")
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let version = text.split_whitespace().nth(2)?;
    Some(version.split('.').next()?.to_owned())
}

fn initdb(
    bindir: &Path,
    pgdata: &Path,
    account: Option<(Uid, Gid)>,
    ephemeral: bool,
) -> Result<(), LocalPgError> {
    let mut command = Command::new(bindir.join("initdb"));
    scrub_secrets(&mut command);
    command
        .arg("-D")
        .arg(pgdata)
        .args(["-U", SUPERUSER, "-E", "UTF8", "--locale=C"])
        .args(["--auth-local=trust", "--auth-host=reject"])
        .env("LC_ALL", "C")
        .current_dir(pgdata.parent().unwrap_or(Path::new("/")))
        .stdin(Stdio::null());
    if ephemeral {
        command.arg("--no-sync");
    }
    if let Some((uid, gid)) = account {
        command.uid(uid.as_raw()).gid(gid.as_raw());
    }
    let output = command.output()?;
    if !output.status.success() {
        let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&output.stderr));
        return Err(LocalPgError::Process {
            program: "initdb".into(),
            output: last_lines(&text, 10),
        });
    }
    Ok(())
}

/// The pid of a live postmaster recorded in `pgdata/postmaster.pid`, if any.
fn running_postmaster(pgdata: &Path) -> Option<u32> {
    let text = fs::read_to_string(pgdata.join("postmaster.pid")).ok()?;
    let pid: u32 = text.lines().next()?.trim().parse().ok()?;
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let program = cmdline.split(|b| *b == 0).next()?;
    let name = Path::new(OsStr::new(std::str::from_utf8(program).ok()?)).file_name()?;
    (name == "postgres" || name == "postmaster").then_some(pid)
}

/// Starts a process that waits for this one to exit, then stops Postgres (when `postgres_pid`
/// is given) and, for ephemeral clusters, removes the directory. It is killed when we stop
/// Postgres ourselves.
fn spawn_watchdog(postgres_pid: Option<u32>, remove: Option<&PathBuf>) -> std::io::Result<Child> {
    const SCRIPT: &str = r#"
while kill -0 "$1" 2>/dev/null; do sleep 1; done
if [ -n "$2" ]; then kill -INT "$2" 2>/dev/null; fi
if [ -n "$3" ]; then
    i=0
    while [ -n "$2" ] && kill -0 "$2" 2>/dev/null && [ "$i" -lt 300 ]; do
        sleep 0.1; i=$((i+1))
    done
    rm -rf -- "$3"
fi
"#;
    let mut command = Command::new("sh");
    scrub_secrets(&mut command);
    command
        .arg("-c")
        .arg(SCRIPT)
        .arg("research-graph-pg-watchdog")
        .arg(std::process::id().to_string())
        .arg(postgres_pid.map(|p| p.to_string()).unwrap_or_default())
        .arg(remove.map(|p| p.as_os_str()).unwrap_or_default())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
}

/// Keeps the server's secrets out of the environment of the processes it starts.
fn scrub_secrets(command: &mut Command) {
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if ["SECRET", "KEY", "PASSWORD", "TOKEN", "DATABASE_URL"]
            .iter()
            .any(|word| name.to_ascii_uppercase().contains(word))
        {
            command.env_remove(name.as_ref());
        }
    }
}

fn wait_exit(child: &mut Child, timeout: Duration) -> bool {
    let started = Instant::now();
    while started.elapsed() < timeout {
        if let Ok(Some(_)) = child.try_wait() {
            return true;
        }
        sleep(Duration::from_millis(50));
    }
    false
}

fn tail(path: &Path) -> String {
    let mut text = String::new();
    if let Ok(mut file) = fs::File::open(path) {
        let _ = file.read_to_string(&mut text);
    }
    last_lines(&text, 10)
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn data_dir_error(dir: &Path, reason: &str) -> LocalPgError {
    LocalPgError::DataDir {
        path: dir.display().to_string(),
        reason: reason.to_owned(),
    }
}
