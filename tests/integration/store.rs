//! The embedded store: acknowledged records survive `kill -9`, and `serve` owns its file alone.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use authward::store::embedded::{EmbeddedOptions, EmbeddedStore};
use authward::store::memory::MemoryLimits;
use authward::store::{Store, record_key};
use bytes::Bytes;

use crate::harness::{Authward, Upstream, bin, client, free_port};

/// Set (to a file path) only in the child that `acknowledged_records_survive_kill_9` starts.
const WRITER_ENV: &str = "AUTHWARD_TEST_STORE_WRITER";
const WRITERS: usize = 8;

fn open(path: &Path) -> EmbeddedStore {
    let opts = EmbeddedOptions {
        path: path.to_path_buf(),
        max_records: 1_000_000,
        memory: MemoryLimits::default(),
    };
    EmbeddedStore::open(opts, authward::clock::system()).unwrap()
}

fn value(id: &str) -> Bytes {
    Bytes::from(format!("value of {id}"))
}

/// Not a test on its own: the child process of `acknowledged_records_survive_kill_9`. It writes records
/// and list items from concurrent tasks and prints `written ID` once each write is acknowledged, until it
/// is killed (or a minute passes).
#[test]
fn crash_writer() {
    let Some(path) = std::env::var_os(WRITER_ENV) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let store = Arc::new(open(Path::new(&path)));
        let start = Instant::now();
        let tasks: Vec<_> = (0..WRITERS)
            .map(|t| {
                let store = store.clone();
                tokio::spawn(async move {
                    let mut i = 0;
                    while start.elapsed() < Duration::from_secs(60) {
                        let id = format!("{t}-{i}");
                        store
                            .put(&record_key("crash", &id), value(&id), None)
                            .await
                            .unwrap();
                        let list = record_key("crash-list", &t.to_string());
                        store.list_push(&list, value(&id), 1_000_000, None).await.unwrap();
                        let mut out = std::io::stdout().lock();
                        writeln!(out, "written {id}").unwrap();
                        out.flush().unwrap();
                        i += 1;
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
}

#[test]
fn acknowledged_records_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "store::crash_writer",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(WRITER_ENV, &path)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut acked = Vec::new();
    while acked.len() < 400 {
        let line = lines
            .next()
            .expect("the writer stopped before it was killed")
            .unwrap();
        if let Some(id) = line.strip_prefix("written ") {
            acked.push(id.to_owned());
        }
    }
    // Child::kill sends SIGKILL: no destructor, no clean close of the file.
    child.kill().unwrap();
    // Lines already in the pipe were printed after their write was acknowledged, too.
    acked.extend(
        lines
            .map_while(Result::ok)
            .filter_map(|l| l.strip_prefix("written ").map(str::to_owned)),
    );
    assert_eq!(child.wait().unwrap().signal(), Some(9));

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = open(&path);
        for id in &acked {
            assert_eq!(
                store.get(&record_key("crash", id)).await.unwrap(),
                Some(value(id)),
                "acknowledged record {id} is in the file"
            );
        }
        for t in 0..WRITERS {
            let items = store
                .list_range(&record_key("crash-list", &t.to_string()), 0, usize::MAX)
                .await
                .unwrap();
            let acked_here = acked.iter().filter(|id| id.starts_with(&format!("{t}-")));
            for id in acked_here {
                assert!(
                    items.contains(&value(id)),
                    "acknowledged list item {id} is in the file"
                );
            }
        }
        let (records, _) = store.usage().unwrap();
        assert!(
            records >= acked.len(),
            "{records} records for {} acknowledged writes",
            acked.len()
        );
    });
}

/// Runs `authward serve` on `config`, which must stop by itself within 20 s; returns its stderr.
fn serve_fails(config: &Path) -> String {
    let mut child = Command::new(bin())
        .args(["serve", "--config"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("authward serve kept running on {}", config.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn config(upstream: &str, store: &str) -> String {
    format!(
        "listen:\n  http: [127.0.0.1:{{PORT}}]\nadmin:\n  listen: 127.0.0.1:{{ADMIN}}\nupstream:\n  url: {upstream}\n{store}"
    )
}

/// A config for a second process, on other ports, in `dir`.
fn second_config(dir: &Path, upstream: &str, store_path: &Path) -> PathBuf {
    let yaml = config(upstream, &format!("store:\n  path: {}\n", store_path.display()))
        .replace("{PORT}", &free_port().to_string())
        .replace("{ADMIN}", &free_port().to_string());
    let path = dir.join("second.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_owns_its_store_file_alone() {
    let up = Upstream::start("a").await;
    let mut first = Authward::start(&config(
        &up.url(),
        "store:\n  kind: embedded\n  path: {DIR}/state.redb\n  max_records: 1000\n",
    ));
    let file = first.dir.path().join("state.redb");
    assert!(file.exists());
    let r = client().get(first.url("/echo")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(first.metrics().await.contains("authward_store_keys "));

    // A second process on the same file stops at start, naming the file.
    let other = tempfile::tempdir().unwrap();
    let err = serve_fails(&second_config(other.path(), &up.url(), &file));
    assert!(
        err.contains(&file.display().to_string()) && err.contains("already in use by another process"),
        "{err}"
    );
    let r = client().get(first.url("/echo")).send().await.unwrap();
    assert_eq!(r.status(), 200, "the first one serves on");

    // Once the first has stopped, the file is free.
    first.signal("TERM");
    assert!(first.wait_exit(Duration::from_secs(10)).is_some());
    let again = Authward::start(&config(
        &up.url(),
        &format!("store:\n  path: {}\n", file.display()),
    ));
    let r = client().get(again.url("/echo")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_defaults_to_a_store_file_beside_its_config() {
    let up = Upstream::start("a").await;
    let aw = Authward::start(&config(&up.url(), ""));
    assert!(aw.dir.path().join("authward.redb").exists());
}

#[test]
fn a_damaged_store_file_stops_serve_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("state.redb");
    std::fs::write(&file, b"not a database\n".repeat(4096)).unwrap();
    let err = serve_fails(&second_config(dir.path(), "http://127.0.0.1:9", &file));
    assert!(
        err.contains(&file.display().to_string()) && err.contains("not a usable authward store"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}
