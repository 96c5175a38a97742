#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! End-to-end tests of the `credvault` binary: a real server process and the CLI talking to it.

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_credvault");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start `credvault server` with extra args and wait until health answers.
fn server(args: &[&str], env: &[(&str, &str)], port: u16, cwd: &Path) -> Proc {
    let mut cmd = Command::new(BIN);
    cmd.arg("server")
        .args(args)
        .current_dir(cwd)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let proc = Proc(cmd.spawn().unwrap());
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return proc;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("server did not start on port {port}");
}

fn cli(addr: &str, token: Option<&str>, args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env("CREDVAULT_ADDR", addr)
        .env_remove("CREDVAULT_TOKEN");
    if let Some(t) = token {
        cmd.env("CREDVAULT_TOKEN", t);
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    if let Some(s) = stdin {
        child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

fn ok_json(o: Output) -> Value {
    assert!(
        o.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

fn dev_token(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("dev-root-token"))
        .unwrap()
        .trim()
        .to_owned()
}

#[test]
fn dev_server_and_credential_commands() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let data = tmp.path().join("data");
    let _srv = server(
        &[
            "--dev",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
            data.to_str().unwrap(),
        ],
        &[],
        port,
        tmp.path(),
    );
    let addr = format!("http://127.0.0.1:{port}");
    let t = dev_token(&data);
    let tk = Some(t.as_str());

    let st = ok_json(cli(
        &addr,
        tk,
        &["operator", "status", "--format", "json"],
        None,
    ));
    assert_eq!(st["sealed"], false);

    let c = ok_json(cli(
        &addr,
        tk,
        &[
            "cred",
            "put",
            "db",
            "--username",
            "app",
            "--param",
            "port=5432",
            "--secret-stdin",
            "--format",
            "json",
        ],
        Some("cli-secret-1\n"),
    ));
    let id = c["id"].as_str().unwrap().to_owned();
    assert!(!c.to_string().contains("cli-secret-1"));
    let g = ok_json(cli(
        &addr,
        tk,
        &["cred", "get", &id, "--secret", "--format", "json"],
        None,
    ));
    assert_eq!(g["secret"], "cli-secret-1");
    assert_eq!(g["parameters"]["port"], "5432");
    ok_json(cli(
        &addr,
        tk,
        &[
            "cred",
            "put",
            "--id",
            &id,
            "--secret",
            "cli-secret-2",
            "--format",
            "json",
        ],
        None,
    ));
    let h = ok_json(cli(
        &addr,
        tk,
        &["cred", "history", &id, "--format", "json"],
        None,
    ));
    assert_eq!(h["items"].as_array().unwrap().len(), 2);
    ok_json(cli(
        &addr,
        tk,
        &["cred", "rollback", &id, "1", "--format", "json"],
        None,
    ));
    let g = ok_json(cli(
        &addr,
        tk,
        &["cred", "get", &id, "--secret", "--format", "json"],
        None,
    ));
    assert_eq!(
        (g["secret"].clone(), g["version"].clone()),
        (Value::from("cli-secret-1"), Value::from(3))
    );
    let l = ok_json(cli(&addr, tk, &["cred", "list", "--format", "json"], None));
    assert_eq!(l["items"].as_array().unwrap().len(), 1);

    // Table output for people.
    let o = cli(&addr, tk, &["cred", "list"], None);
    assert!(String::from_utf8_lossy(&o.stdout).contains("USERNAME"));

    // Identities and a token for another user, who cannot see root's credential.
    ok_json(cli(
        &addr,
        tk,
        &["user", "add", "alice", "--format", "json"],
        None,
    ));
    let tok = ok_json(cli(
        &addr,
        tk,
        &["token", "create", "--user", "alice", "--format", "json"],
        None,
    ));
    let alice = tok["token"].as_str().unwrap().to_owned();
    let o = cli(&addr, Some(&alice), &["cred", "get", &id], None);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("403"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    let v = ok_json(cli(
        &addr,
        tk,
        &["audit", "verify", "--format", "json"],
        None,
    ));
    assert_eq!(v["ok"], true);
    let tail = ok_json(cli(
        &addr,
        tk,
        &["audit", "tail", "-n", "50", "--format", "json"],
        None,
    ));
    assert!(tail["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["action"] == "credential.read_secret"));

    // An application reads through the CCP door.
    ok_json(cli(
        &addr,
        tk,
        &["safe", "add", "AppSafe", "--format", "json"],
        None,
    ));
    ok_json(cli(
        &addr,
        tk,
        &[
            "cred",
            "put",
            "svc-db",
            "--safe",
            "AppSafe",
            "--username",
            "svc",
            "--secret",
            "app-read-secret",
            "--property",
            "PolicyID=DB",
            "--format",
            "json",
        ],
        None,
    ));
    ok_json(cli(
        &addr,
        tk,
        &[
            "app",
            "create",
            "Billing",
            "--source",
            "127.0.0.1/32",
            "--format",
            "json",
        ],
        None,
    ));
    let shown = ok_json(cli(
        &addr,
        tk,
        &[
            "app", "allow", "Billing", "--safe", "AppSafe", "--format", "json",
        ],
        None,
    ));
    assert_eq!(shown["grants"][0]["name"], "AppSafe");
    let o = cli(&addr, tk, &["app", "list"], None);
    assert!(String::from_utf8_lossy(&o.stdout).contains("safe:AppSafe"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let v: Value = rt.block_on(async {
        reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(45))
            .build()
            .unwrap()
            .get(format!(
                "{addr}/AIMWebService/api/Accounts?AppID=Billing&Safe=AppSafe&UserName=svc"
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    assert_eq!(
        (v["Content"].as_str(), v["PolicyID"].as_str()),
        (Some("app-read-secret"), Some("DB"))
    );
    ok_json(cli(
        &addr,
        tk,
        &[
            "app", "deny", "Billing", "--safe", "AppSafe", "--format", "json",
        ],
        None,
    ));
    ok_json(cli(&addr, tk, &["app", "rm", "Billing"], None).pipe_ok());

    ok_json(cli(&addr, tk, &["cred", "rm", &id], None).pipe_ok());
    // No token: a clear error, non-zero exit.
    let o = cli(&addr, None, &["cred", "list"], None);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("unauthenticated"));
}

trait PipeOk {
    fn pipe_ok(self) -> Output;
}
impl PipeOk for Output {
    /// `rm` prints nothing; turn success into a JSON `null` for `ok_json`.
    fn pipe_ok(mut self) -> Output {
        if self.status.success() && self.stdout.is_empty() {
            self.stdout = b"null".to_vec();
        }
        self
    }
}

/// A dev server on a free port in `dir`; its address and root token.
fn dev_server(dir: &Path) -> (Proc, String, String) {
    let port = free_port();
    let data = dir.join("data");
    let proc = server(
        &[
            "--dev",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
            data.to_str().unwrap(),
        ],
        &[],
        port,
        dir,
    );
    (proc, format!("http://127.0.0.1:{port}"), dev_token(&data))
}

#[test]
fn integration_commands_pull_from_another_credvault() {
    let (rdir, ldir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (_remote, raddr, rt) = dev_server(rdir.path());
    let (_local, laddr, lt) = dev_server(ldir.path());
    let (r, l) = (Some(rt.as_str()), Some(lt.as_str()));
    let j = ["--format", "json"];
    let run = |addr: &str, t: Option<&str>, args: &[&str], stdin: Option<&str>| {
        ok_json(cli(addr, t, &[args, &j].concat(), stdin))
    };
    run(&raddr, r, &["safe", "add", "apps"], None);
    run(
        &raddr,
        r,
        &[
            "cred",
            "put",
            "db",
            "--safe",
            "apps",
            "--username",
            "dbuser",
            "--secret-stdin",
        ],
        Some("remote-pw-1\n"),
    );
    run(
        &raddr,
        r,
        &["app", "create", "Puller", "--source", "127.0.0.1/32"],
        None,
    );
    run(
        &raddr,
        r,
        &["app", "allow", "Puller", "--safe", "apps"],
        None,
    );

    run(&laddr, l, &["safe", "add", "mirrors"], None);
    let i = run(
        &laddr,
        l,
        &[
            "integration",
            "add",
            "r",
            "--kind",
            "ccp",
            "--url",
            &raddr,
            "--safe",
            "mirrors",
            "--names",
            "db",
            "--app-id",
            "Puller",
            "--remote-safe",
            "apps",
            "--cache-expiry",
            "0",
        ],
        None,
    );
    assert_eq!(i["status"]["fetched"], 1, "{i}");
    let t = run(&laddr, l, &["integration", "test", "r"], None);
    assert_eq!(t["fetched"][0]["user"], "dbuser");
    assert!(!t.to_string().contains("remote-pw-1"));
    let listed = run(&laddr, l, &["cred", "list", "--safe", "mirrors"], None);
    let id = listed["items"][0]["id"].as_str().unwrap().to_owned();
    let g = run(&laddr, l, &["cred", "get", &id, "--secret"], None);
    assert_eq!(g["secret"], "remote-pw-1");
    // Read-only: a write through the CLI is refused with the reason.
    let o = cli(
        &laddr,
        l,
        &["cred", "put", "--id", &id, "--secret", "x"],
        None,
    );
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("read-only"));
    let shown = run(&laddr, l, &["integration", "list"], None);
    assert_eq!(shown["items"][0]["name"], "r");
    run(&laddr, l, &["integration", "disable", "r"], None);
    let listed = run(&laddr, l, &["cred", "list", "--safe", "mirrors"], None);
    assert!(listed["items"].as_array().unwrap().is_empty());
    // A remote that answers nothing: `integration test` fails with the reason.
    drop(_remote);
    let o = cli(&laddr, l, &["integration", "test", "r"], None);
    assert!(!o.status.success());
}

#[test]
fn bulk_import_from_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let (_srv, addr, root) = dev_server(dir.path());
    let lines: String = (0..2500)
        .map(|i| {
            format!("{{\"name\": \"n{i}\", \"username\": \"u{i}\", \"secret\": \"imp-{i}\"}}\n")
        })
        .collect();
    let file = dir.path().join("creds.jsonl");
    std::fs::write(&file, lines).unwrap();
    let ids = dir.path().join("ids.txt");
    let o = cli(
        &addr,
        Some(&root),
        &[
            "cred",
            "import",
            file.to_str().unwrap(),
            "--ids-out",
            ids.to_str().unwrap(),
        ],
        None,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("imported 2500"));
    let ids: Vec<String> = std::fs::read_to_string(&ids)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(ids.len(), 2500);
    let g = ok_json(cli(
        &addr,
        Some(&root),
        &["cred", "get", &ids[2499], "--secret", "--format", "json"],
        None,
    ));
    assert_eq!(g["secret"], "imp-2499");
    // A broken line stops the import there, naming the line and not echoing it.
    std::fs::write(
        &file,
        "{\"name\": \"fine\"}\n{\"name\": \"sec\", \"secret\": \"leak-me\"\n",
    )
    .unwrap();
    let o = cli(
        &addr,
        Some(&root),
        &["cred", "import", file.to_str().unwrap()],
        None,
    );
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("line 2") && !err.contains("leak-me"), "{err}");
}

#[test]
fn service_user_api_key_and_entity_import() {
    let dir = tempfile::tempdir().unwrap();
    let (_srv, addr, root) = dev_server(dir.path());
    let j = ["--format", "json"];
    let run = |t: Option<&str>, args: &[&str], stdin: Option<&str>| {
        ok_json(cli(&addr, t, &[args, &j].concat(), stdin))
    };
    run(Some(&root), &["user", "add", "deployer", "--service"], None);
    let k = run(
        Some(&root),
        &[
            "apikey",
            "create",
            "--user",
            "deployer",
            "--description",
            "ci",
        ],
        None,
    );
    let key = k["token"].as_str().unwrap().to_owned();
    let keys = run(Some(&root), &["apikey", "list"], None);
    assert_eq!(keys["items"].as_array().unwrap().len(), 1);
    assert!(!keys.to_string().contains(&key));

    // A connection file with credentials in it: imported, then written back without them.
    let conn = dir.path().join("athena.json");
    std::fs::write(
        &conn,
        r#"{"name": "Athena", "dataSource": "Athena", "parameters": {"region": "us-east-2"},
            "credentials": {"parameters": {"login": "svc-athena", "password": "imported-pw"}}}"#,
    )
    .unwrap();
    run(
        Some(&key),
        &[
            "entity",
            "import",
            conn.to_str().unwrap(),
            "--package",
            "Chem",
        ],
        None,
    );
    let rewritten: Value = serde_json::from_str(&std::fs::read_to_string(&conn).unwrap()).unwrap();
    assert_eq!(rewritten.get("credentials"), None);
    assert_eq!(rewritten["parameters"]["region"], "us-east-2");
    assert!(!rewritten.to_string().contains("imported-pw"));
    let got = run(Some(&key), &["entity", "get", "Chem.Athena"], None);
    assert_eq!(got["parameters"]["password"], "imported-pw");
    run(
        Some(&key),
        &["entity", "set", "Chem"],
        Some(r#"{"token": "pkg-token"}"#),
    );
    assert_eq!(
        run(Some(&key), &["entity", "get", "Chem"], None)["parameters"]["token"],
        "pkg-token"
    );

    // Revoked: the key stops working.
    let id = keys["items"][0]["id"].as_str().unwrap().to_owned();
    let o = cli(&addr, Some(&root), &["apikey", "revoke", &id], None);
    assert!(o.status.success());
    let o = cli(&addr, Some(&key), &["entity", "get", "Chem"], None);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("401"));
}

#[test]
fn init_with_key_file_then_unseal_at_start_with_config_file_and_env() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let data = tmp.path().join("data");
    // The config file names a port nobody listens on; the environment overrides it.
    std::fs::write(
        tmp.path().join("credvault.toml"),
        format!(
            "listen = \"127.0.0.1:1\"\ndata_dir = \"{}\"\n",
            data.display()
        ),
    )
    .unwrap();
    let listen = format!("127.0.0.1:{port}");
    let addr = format!("http://{listen}");
    let key_file = tmp.path().join("unseal.key");
    let root = {
        let _srv = server(&[], &[("CREDVAULT_LISTEN", &listen)], port, tmp.path());
        let st = ok_json(cli(
            &addr,
            None,
            &["operator", "status", "--format", "json"],
            None,
        ));
        assert_eq!(
            (st["initialized"].clone(), st["sealed"].clone()),
            (Value::Bool(false), Value::Bool(true))
        );
        let init = ok_json(cli(
            &addr,
            None,
            &[
                "operator",
                "init",
                "--key-file",
                key_file.to_str().unwrap(),
                "--format",
                "json",
            ],
            None,
        ));
        let root = init["root_token"].as_str().unwrap().to_owned();
        // Sealed until unsealed.
        let o = cli(&addr, Some(&root), &["cred", "list"], None);
        assert!(String::from_utf8_lossy(&o.stderr).contains("sealed"));
        let key = std::fs::read_to_string(&key_file).unwrap();
        let st = ok_json(cli(
            &addr,
            None,
            &["operator", "unseal", "--format", "json"],
            Some(&key),
        ));
        assert_eq!(st["sealed"], false);
        ok_json(cli(
            &addr,
            Some(&root),
            &[
                "cred",
                "put",
                "kept",
                "--secret",
                "persisted",
                "--format",
                "json",
            ],
            None,
        ));
        root
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let _srv = server(
        &["--unseal-key-file", key_file.to_str().unwrap()],
        &[("CREDVAULT_LISTEN", &listen)],
        port,
        tmp.path(),
    );
    let l = ok_json(cli(
        &addr,
        Some(&root),
        &["cred", "list", "--format", "json"],
        None,
    ));
    let id = l["items"][0]["id"].as_str().unwrap().to_owned();
    let g = ok_json(cli(
        &addr,
        Some(&root),
        &["cred", "get", &id, "--secret", "--format", "json"],
        None,
    ));
    assert_eq!(g["secret"], "persisted");
}

#[test]
fn bad_config_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("credvault.toml"), "lisen = \"x\"\n").unwrap();
    let o = Command::new(BIN)
        .args(["server"])
        .current_dir(tmp.path())
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("lisen"), "{err}");

    // Settings are typed wherever they come from: a bad value is named with its source.
    for (env, flag, expect) in [
        (
            Some(("CREDVAULT_LOG_FORMAT", "xml")),
            None,
            "found `xml`, expected",
        ),
        (
            Some(("CREDVAULT_STORAGE", "postgres")),
            None,
            "needs --database-url",
        ),
        (
            None,
            Some(["--storage", "mysql"]),
            "possible values: sqlite, postgres",
        ),
    ] {
        std::fs::remove_file(tmp.path().join("credvault.toml")).ok();
        let mut c = Command::new(BIN);
        c.arg("server").current_dir(tmp.path());
        if let Some((k, v)) = env {
            c.env(k, v);
        }
        if let Some(f) = flag {
            c.args(f);
        }
        let o = c.output().unwrap();
        assert!(!o.status.success());
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(expect), "{expect}: {err}");
    }
}

#[test]
fn acknowledged_writes_survive_kill_9() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let data = tmp.path().join("data");
    let args = [
        "--dev",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--data-dir",
        data.to_str().unwrap(),
    ]
    .map(str::to_owned);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let addr = format!("http://127.0.0.1:{port}");
    let mut ids = Vec::new();
    {
        let mut srv = server(&args, &[], port, tmp.path());
        let t = dev_token(&data);
        for i in 0..20 {
            let c = ok_json(cli(
                &addr,
                Some(&t),
                &[
                    "cred",
                    "put",
                    &format!("k{i}"),
                    "--secret",
                    &format!("v{i}"),
                    "--format",
                    "json",
                ],
                None,
            ));
            ids.push(c["id"].as_str().unwrap().to_owned());
        }
        // SIGKILL: no shutdown hook, no flush.
        srv.0.kill().unwrap();
        srv.0.wait().unwrap();
    }
    let _srv = server(&args, &[], port, tmp.path());
    let t = dev_token(&data);
    for (i, id) in ids.iter().enumerate() {
        let g = ok_json(cli(
            &addr,
            Some(&t),
            &["cred", "get", id, "--secret", "--format", "json"],
            None,
        ));
        assert_eq!(g["secret"], format!("v{i}"));
    }
    let v = ok_json(cli(
        &addr,
        Some(&t),
        &["audit", "verify", "--format", "json"],
        None,
    ));
    assert_eq!(v["ok"], true);
}

#[test]
#[ignore = "needs PostgreSQL: run by the PostgreSQL phase of scripts/test (--run-ignored all)"]
fn migrate_sqlite_to_postgres_and_back() {
    let admin = std::env::var("CREDVAULT_TEST_DATABASE_URL").expect("CREDVAULT_TEST_DATABASE_URL");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let db = format!("cv_migrate_{}", std::process::id());
    rt.block_on(async {
        use sqlx::Connection;
        let mut c = sqlx::PgConnection::connect(&admin).await.unwrap();
        sqlx::query(&format!("CREATE DATABASE {db}"))
            .execute(&mut c)
            .await
            .unwrap();
    });
    let pg_url = format!("{}/{db}", admin.rsplit_once('/').unwrap().0);

    let tmp = tempfile::tempdir().unwrap();
    let d1 = tmp.path().join("d1");
    let port = free_port();
    let addr = format!("http://127.0.0.1:{port}");
    let listen = format!("127.0.0.1:{port}");
    let mut ids = Vec::new();
    {
        let _srv = server(
            &[
                "--dev",
                "--listen",
                &listen,
                "--data-dir",
                d1.to_str().unwrap(),
            ],
            &[],
            port,
            tmp.path(),
        );
        let t = dev_token(&d1);
        for i in 0..5 {
            let c = ok_json(cli(
                &addr,
                Some(&t),
                &[
                    "cred",
                    "put",
                    &format!("m{i}"),
                    "--secret",
                    &format!("ms{i}"),
                    "--format",
                    "json",
                ],
                None,
            ));
            ids.push(c["id"].as_str().unwrap().to_owned());
        }
        ok_json(cli(
            &addr,
            Some(&t),
            &[
                "cred", "put", "--id", &ids[0], "--secret", "ms0-v2", "--format", "json",
            ],
            None,
        ));
    }
    let key = d1.join("dev-unseal.key");
    let token = dev_token(&d1);
    let check = |args: &[&str]| {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let addr = format!("http://{listen}");
        let mut all = vec![
            "--listen",
            listen.as_str(),
            "--unseal-key-file",
            key.to_str().unwrap(),
        ];
        all.extend_from_slice(args);
        let _srv = server(&all, &[], port, tmp.path());
        for (i, id) in ids.iter().enumerate() {
            let g = ok_json(cli(
                &addr,
                Some(&token),
                &["cred", "get", id, "--secret", "--format", "json"],
                None,
            ));
            let want = if i == 0 {
                "ms0-v2".to_owned()
            } else {
                format!("ms{i}")
            };
            assert_eq!(g["secret"], want);
        }
        let h = ok_json(cli(
            &addr,
            Some(&token),
            &["cred", "history", &ids[0], "--format", "json"],
            None,
        ));
        assert_eq!(h["items"].as_array().unwrap().len(), 2);
        let v = ok_json(cli(
            &addr,
            Some(&token),
            &["audit", "verify", "--format", "json"],
            None,
        ));
        assert_eq!(v["ok"], true, "{v}");
    };

    let out = ok_json(cli(
        &addr,
        None,
        &[
            "operator",
            "migrate",
            "--from",
            &format!("sqlite:{}", d1.display()),
            "--to",
            &pg_url,
            "--format",
            "json",
        ],
        None,
    ));
    assert_eq!(out["verified"], true);
    assert!(out["audit_records"].as_i64().unwrap() > 5);
    check(&["--storage", "postgres", "--database-url", &pg_url]);

    // Into a destination that already holds a vault: refused.
    let o = cli(
        &addr,
        None,
        &[
            "operator",
            "migrate",
            "--from",
            &format!("sqlite:{}", d1.display()),
            "--to",
            &pg_url,
        ],
        None,
    );
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("already holds a vault"));

    // And back to a fresh SQLite directory.
    let d2 = tmp.path().join("d2");
    ok_json(cli(
        &addr,
        None,
        &[
            "operator",
            "migrate",
            "--from",
            &pg_url,
            "--to",
            &format!("sqlite:{}", d2.display()),
            "--format",
            "json",
        ],
        None,
    ));
    check(&["--data-dir", d2.to_str().unwrap()]);
}

#[test]
fn domain_and_a2a_application_commands() {
    let dir = tempfile::tempdir().unwrap();
    let (_srv, addr, root) = dev_server(dir.path());
    let j = ["--format", "json"];
    let run = |args: &[&str]| ok_json(cli(&addr, Some(&root), &[args, &j].concat(), None));
    let d = run(&["domain", "add", "corp.example", "--abbreviation", "CORP"]);
    assert_eq!(
        (d["name"].clone(), d["abbreviation"].clone()),
        (json!("corp.example"), json!("CORP"))
    );
    let l = run(&["domain", "list"]);
    assert_eq!(l["items"].as_array().unwrap().len(), 1);
    // A taken name is a clear error, not a crash.
    let o = cli(&addr, Some(&root), &["domain", "add", "CORP"], None);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("already exists"));

    // An A2A application: client id = AppID, a client secret shown once, a safe it may write.
    run(&["safe", "add", "pam"]);
    let a = run(&[
        "app",
        "create",
        "Provisioner",
        "--source",
        "127.0.0.1",
        "--client-secret",
    ]);
    assert!(a["client_secret_value"].as_str().unwrap().len() >= 40);
    let g = run(&["app", "allow", "Provisioner", "--safe", "pam", "--write"]);
    assert_eq!(g["grants"], json!([{"type": "safe-write", "name": "pam"}]));
    let o = cli(
        &addr,
        Some(&root),
        &[
            "app",
            "allow",
            "Provisioner",
            "--credential",
            "x",
            "--write",
        ],
        None,
    );
    assert!(!o.status.success(), "--write goes with --safe");
    let first = a["client_secret_value"].as_str().unwrap().to_owned();
    let n = run(&["app", "client-secret", "Provisioner"]);
    let second = n["client_secret_value"].as_str().unwrap();
    assert!(
        second.len() >= 40 && second != first,
        "a new secret, shown once"
    );
    assert_eq!(n["client_secret"], true);

    let o = cli(&addr, Some(&root), &["domain", "rm", "corp.example"], None);
    assert!(o.status.success());
    assert_eq!(run(&["domain", "list"])["items"], json!([]));
    let help = cli(&addr, None, &["domain", "add", "--help"], None);
    assert!(String::from_utf8_lossy(&help.stdout).contains("abbreviation"));
}

#[test]
fn backup_while_serving_then_restore_and_compare() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    let dir = tempfile::tempdir().unwrap();
    let (_srv, addr, root) = dev_server(dir.path());
    let data = dir.path().join("data");
    let j = ["--format", "json"];
    let run = |args: &[&str]| ok_json(cli(&addr, Some(&root), &[args, &j].concat(), None));
    let mut before = Vec::new();
    for i in 0..25 {
        let secret = format!("pre-secret-{i}-xyzzy");
        let c = run(&["cred", "put", &format!("pre-{i}"), "--secret", &secret]);
        before.push((c["id"].as_str().unwrap().to_owned(), secret));
    }
    run(&[
        "cred",
        "put",
        "--id",
        &before[0].0,
        "--secret",
        "pre-secret-0-v2-xyzzy",
    ]);
    before[0].1 = "pre-secret-0-v2-xyzzy".into();

    // A writer keeps creating w-0, w-1, ... while the backup runs.
    let stop = Arc::new(AtomicBool::new(false));
    let attempted = Arc::new(Mutex::new(0usize));
    let writer = {
        let (stop, attempted, addr, root) =
            (stop.clone(), attempted.clone(), addr.clone(), root.clone());
        std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                *attempted.lock().unwrap() = i + 1;
                let o = cli(
                    &addr,
                    Some(&root),
                    &[
                        "cred",
                        "put",
                        &format!("w-{i}"),
                        "--secret",
                        "written-during",
                    ],
                    None,
                );
                assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
                i += 1;
            }
        })
    };
    std::thread::sleep(Duration::from_millis(400));
    let file = dir.path().join("vault.cvb");
    let b = run(&["operator", "backup", file.to_str().unwrap()]);
    assert!(b["rows"].as_u64().unwrap() > 50, "{b}");
    assert_eq!(b["unseal_keys_needed"], 1);
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let attempted = *attempted.lock().unwrap();
    assert!(attempted > 0);

    // Encrypted as a whole: no secret, no name in clear.
    let bytes = std::fs::read(&file).unwrap();
    for needle in [&b"pre-secret-1-xyzzy"[..], b"pre-12", b"written-during"] {
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle),
            "{}",
            String::from_utf8_lossy(needle)
        );
    }
    let o = cli(
        &addr,
        Some(&root),
        &["operator", "backup", file.to_str().unwrap()],
        None,
    );
    assert!(!o.status.success(), "an existing file is not overwritten");

    // Damaged copies are refused: a flipped byte, a cut-off end.
    let key = data.join("dev-unseal.key");
    let restore = |src: &Path, to: &Path| {
        cli(
            &addr,
            None,
            &[
                "operator",
                "restore",
                src.to_str().unwrap(),
                "--to",
                &format!("sqlite:{}", to.display()),
                "--unseal-key-file",
                key.to_str().unwrap(),
                "--format",
                "json",
            ],
            None,
        )
    };
    let mut bad = bytes.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x40;
    let flipped = dir.path().join("flipped.cvb");
    std::fs::write(&flipped, &bad).unwrap();
    let o = restore(&flipped, &dir.path().join("r-flipped"));
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("integrity"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // What a refused restore left is not a vault (no seal configuration): nothing can unseal it.
    let db = dir.path().join("r-flipped/credvault.db");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let seal_rows: i64 = rt.block_on(async {
        use sqlx::Connection;
        let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
            .await
            .unwrap();
        sqlx::query_scalar("SELECT COUNT(*) FROM seal_config")
            .fetch_one(&mut c)
            .await
            .unwrap()
    });
    assert_eq!(seal_rows, 0);
    // An edited header (here the row estimate) and bytes after the end are refused too.
    let nl = bytes.iter().position(|b| *b == b'\n').unwrap();
    let header = String::from_utf8(bytes[..nl].to_vec()).unwrap();
    let edited = header.replacen("\"approx_rows\":", "\"approx_rows\":9", 1);
    assert_ne!(edited, header);
    let mut e = edited.into_bytes();
    e.extend_from_slice(&bytes[nl..]);
    let edited_file = dir.path().join("edited.cvb");
    std::fs::write(&edited_file, &e).unwrap();
    let o = restore(&edited_file, &dir.path().join("r-edited"));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("header was altered"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let mut longer = bytes.clone();
    longer.extend_from_slice(b"trailing");
    let longer_file = dir.path().join("longer.cvb");
    std::fs::write(&longer_file, &longer).unwrap();
    let o = restore(&longer_file, &dir.path().join("r-longer"));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("integrity"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let cut = dir.path().join("cut.cvb");
    std::fs::write(&cut, &bytes[..bytes.len() - 40]).unwrap();
    let o = restore(&cut, &dir.path().join("r-cut"));
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("incomplete"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    // The real restore, verified by the command itself.
    let restored = dir.path().join("restored");
    let r = ok_json(restore(&file, &restored));
    assert_eq!(r["verified"], true);
    assert!(r["credentials_verified"].as_u64().unwrap() >= 25, "{r}");
    let o = restore(&file, &restored);
    assert!(!o.status.success(), "restoring over a vault is refused");

    // A server on the restored data, unsealed with the same key: every credential as it was, the
    // writer's credentials an unbroken prefix (one instant), the audit chain intact.
    let port = free_port();
    let addr2 = format!("http://127.0.0.1:{port}");
    let _srv2 = server(
        &[
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
            restored.to_str().unwrap(),
            "--unseal-key-file",
            key.to_str().unwrap(),
        ],
        &[],
        port,
        dir.path(),
    );
    let run2 = |args: &[&str]| ok_json(cli(&addr2, Some(&root), &[args, &j].concat(), None));
    for (id, secret) in &before {
        assert_eq!(
            run2(&["cred", "get", id, "--secret"])["secret"],
            secret.as_str()
        );
    }
    let l = run2(&["cred", "list", "--limit", "1000"]);
    let mut ws: Vec<usize> = l["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["name"].as_str()?.strip_prefix("w-")?.parse().ok())
        .collect();
    ws.sort_unstable();
    assert!(
        ws.iter().enumerate().all(|(i, w)| i == *w),
        "a consistent snapshot: {ws:?}"
    );
    assert!(ws.len() <= attempted);
    assert_eq!(run2(&["audit", "verify"])["ok"], true);
}

#[test]
fn completions_and_man_pages_come_from_the_commands() {
    let run = |args: &[&str]| {
        let o = Command::new(BIN).args(args).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap()
    };
    let bash = run(&["completions", "bash"]);
    for word in [
        "credvault",
        "operator",
        "cred",
        "rollback",
        "--secret-stdin",
    ] {
        assert!(bash.contains(word), "bash completion lacks {word}");
    }
    assert!(run(&["completions", "zsh"]).starts_with("#compdef credvault"));
    assert!(run(&["completions", "fish"]).contains("complete -c credvault"));
    let o = Command::new(BIN)
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert!(!o.status.success());

    let top = run(&["man"]);
    assert!(top.contains(".TH credvault"), "{top}");
    assert!(top.contains("credvault\\-cred"), "{top}");
    let dir = tempfile::tempdir().unwrap();
    run(&["man", dir.path().to_str().unwrap()]);
    let page = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap();
    assert!(page("credvault.1").contains(".TH credvault"));
    let get = page("credvault-cred-get.1");
    assert!(get.contains(".TH credvault-cred-get"), "{get}");
    assert!(
        get.contains("credvault\\-cred\\-get \\- Show a credential"),
        "{get}"
    );
    assert!(get.contains("\\-\\-secret"), "{get}");
    assert!(page("credvault-operator-init.1").contains("threshold"));
}

#[test]
fn credentials_by_name_identifier_or_id() {
    let tmp = tempfile::tempdir().unwrap();
    let (_srv, addr, root) = dev_server(tmp.path());
    let as_user = |token: &str, args: &[&str]| {
        let mut a = args.to_vec();
        a.extend(["--format", "json"]);
        cli(&addr, Some(token), &a, None)
    };
    let run = |args: &[&str]| ok_json(as_user(&root, args));
    let fails = |args: &[&str]| {
        let o = as_user(&root, args);
        assert!(!o.status.success(), "{args:?} succeeded");
        String::from_utf8(o.stderr).unwrap()
    };
    for safe in ["prod", "staging"] {
        run(&["safe", "add", safe]);
    }
    let put = |name: &str, safe: &str, secret: &str| {
        run(&["cred", "put", name, "--safe", safe, "--secret", secret])["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let main = put("db-prod", "prod", "p-main");
    run(&["cred", "put", "--id", &main, "--identifier", "db-main"]);
    let prod_db = put("db", "prod", "p-db");
    let staging_db = put("db", "staging", "s-db");
    let secret = |target: &[&str]| {
        let mut a = vec!["cred", "get"];
        a.extend(target);
        a.push("--secret");
        run(&a)["secret"].as_str().unwrap().to_owned()
    };

    // SAFE/NAME, a NAME unique among what the caller sees, --identifier, and the id itself.
    assert_eq!(secret(&["prod/db"]), "p-db");
    assert_eq!(secret(&["staging/db"]), "s-db");
    assert_eq!(secret(&["db-prod"]), "p-main");
    assert_eq!(secret(&["--identifier", "db-main"]), "p-main");
    assert_eq!(secret(&[&prod_db]), "p-db");
    assert_eq!(run(&["cred", "get", "db-prod"])["id"], main.as_str());

    // Ambiguous: the candidates, as SAFE/NAME and id; nothing is read.
    let e = fails(&["cred", "get", "db", "--secret"]);
    for part in [
        "2 credentials are named db",
        "prod/db",
        "staging/db",
        &prod_db,
        &staging_db,
    ] {
        assert!(e.contains(part), "{part} missing from: {e}");
    }
    // Missing: said in the user's terms, not as a UUID parse error.
    let e = fails(&["cred", "get", "prod/nope"]);
    assert!(e.contains("no credential named nope in safe prod"), "{e}");
    let e = fails(&["cred", "get", "nope"]);
    assert!(e.contains("no credential named nope visible to you"), "{e}");
    let e = fails(&["cred", "get", "--identifier", "nope"]);
    assert!(
        e.contains("no credential with identifier nope visible to you"),
        "{e}"
    );
    let e = fails(&["cred", "get", "db-prod", "--identifier", "db-main"]);
    assert!(e.contains("cannot be used with"), "{e}");

    // Every command that takes a credential takes a name too.
    run(&["cred", "put", "--id", "prod/db", "--secret", "p-db-2"]);
    let h = run(&["cred", "history", "prod/db"]);
    assert_eq!(h["items"].as_array().unwrap().len(), 2);
    let r = run(&["cred", "rollback", "prod/db", "1"]);
    assert_eq!(
        (r["id"].as_str(), r["version"].as_i64()),
        (Some(prod_db.as_str()), Some(3))
    );
    let h = run(&["cred", "history", "--identifier", "db-main"]);
    assert_eq!(h["items"].as_array().unwrap().len(), 2);
    let r = run(&["cred", "rollback", "--identifier", "db-main", "1"]);
    assert_eq!(
        (r["id"].as_str(), r["version"].as_i64()),
        (Some(main.as_str()), Some(3))
    );
    // Version 1 had no identifier yet: the rollback took it away again.
    let h = run(&["cred", "history", &main]);
    assert_eq!(h["items"].as_array().unwrap().len(), 3);
    let e = fails(&["cred", "history", "--identifier", "db-main"]);
    assert!(e.contains("no credential with identifier db-main"), "{e}");
    run(&["app", "create", "Billing", "--source", "127.0.0.1/32"]);
    let a = run(&["app", "allow", "Billing", "--credential", "db-prod"]);
    assert_eq!(a["grants"][0]["name"], main.as_str());
    let a = run(&["app", "deny", "Billing", "--credential", "prod/db-prod"]);
    assert!(a["grants"].as_array().unwrap().is_empty(), "{a}");

    // "Unique" means among what the caller can see: alice sees only staging.
    run(&["user", "add", "alice"]);
    run(&[
        "safe",
        "grant",
        "staging",
        "user:alice",
        "--permissions",
        "list,read",
    ]);
    let alice = run(&["token", "create", "--user", "alice"])["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let g = ok_json(as_user(&alice, &["cred", "get", "db", "--secret"]));
    assert_eq!(g["secret"], "s-db");
    let o = as_user(&alice, &["cred", "get", "db-prod"]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no credential named db-prod visible to you")
    );

    ok_json(cli(&addr, Some(&root), &["cred", "rm", "staging/db"], None).pipe_ok());
    assert_eq!(secret(&["db"]), "p-db");
}

/// Issue 16.7: the server process cannot leave a core dump (its memory holds the unsealed keys)
/// and what it creates is its owner's alone, whatever it inherits; `--allow-core-dumps` leaves the
/// inherited limit alone.
#[test]
fn the_server_turns_core_dumps_off_and_sets_a_private_umask() {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    // What a careless shell hands down: core dumps as large as allowed, umask 022.
    let hard = getrlimit(Resource::Core).maximum;
    setrlimit(
        Resource::Core,
        Rlimit {
            current: hard,
            maximum: hard,
        },
    )
    .unwrap();
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
    let inherited = if hard == Some(0) {
        "0".to_owned()
    } else {
        hard.map_or("unlimited".to_owned(), |h| h.to_string())
    };
    let core_limit = |pid: u32| -> Vec<String> {
        let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
        let line = limits
            .lines()
            .find(|l| l.starts_with("Max core file size"))
            .unwrap()
            .to_owned();
        line.split_whitespace()
            .skip(4)
            .take(2)
            .map(str::to_owned)
            .collect()
    };
    let umask = |pid: u32| -> String {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("Umask:"))
            .unwrap()
            .trim()
            .to_owned()
    };

    let dir = tempfile::tempdir().unwrap();
    let (proc, addr, token) = dev_server(dir.path());
    let pid = proc.0.id();
    assert_eq!(core_limit(pid), ["0", "0"], "core size, soft and hard");
    assert_eq!(umask(pid), "0077");
    // What it writes is private: the data directory and every file in it.
    let o = cli(
        &addr,
        Some(&token),
        &["cred", "put", "a", "--secret-stdin"],
        Some("s3cret"),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    use std::os::unix::fs::PermissionsExt;
    let data = dir.path().join("data");
    for entry in std::fs::read_dir(&data).unwrap() {
        let path = entry.unwrap().path();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", path.display());
    }
    drop(proc);

    // Allowed on purpose: the inherited limit stays.
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let proc = server(
        &[
            "--dev",
            "--allow-core-dumps",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
            dir.path().join("data").to_str().unwrap(),
        ],
        &[],
        port,
        dir.path(),
    );
    assert_eq!(core_limit(proc.0.id()), [inherited.clone(), inherited]);
    assert_eq!(umask(proc.0.id()), "0077", "the umask is set either way");
}

/// Issue 16.2: `audit archive --before DATE FILE` moves the older records into a signed,
/// owner-only file; `audit verify` still proves the rest and `audit verify FILE` the archive.
#[test]
fn audit_archive_then_verify_the_log_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (_proc, addr, token) = dev_server(dir.path());
    let tk = Some(token.as_str());
    for i in 0..3 {
        let o = cli(
            &addr,
            tk,
            &["cred", "put", &format!("c{i}"), "--secret-stdin"],
            Some("s"),
        );
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let file = dir.path().join("audit-2026.jsonl");
    let f = file.to_str().unwrap();
    let v = ok_json(cli(
        &addr,
        tk,
        &[
            "audit",
            "archive",
            "--before",
            "2999-01-01",
            f,
            "--format",
            "json",
        ],
        None,
    ));
    assert!(v["records"].as_i64().unwrap() >= 4, "{v}");
    assert_eq!(v["deleted"], v["records"]);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let v = ok_json(cli(
        &addr,
        tk,
        &["audit", "verify", "--format", "json"],
        None,
    ));
    assert_eq!(v["ok"], true, "{v}");
    let v = ok_json(cli(
        &addr,
        tk,
        &["audit", "verify", f, "--format", "json"],
        None,
    ));
    assert_eq!(v["ok"], true, "{v}");
    // An edited archive fails, and so does writing over an existing file.
    let text = std::fs::read_to_string(&file).unwrap();
    let edited = dir.path().join("edited.jsonl");
    std::fs::write(&edited, text.replacen("\"root\"", "\"r00t\"", 1)).unwrap();
    let o = cli(
        &addr,
        tk,
        &["audit", "verify", edited.to_str().unwrap()],
        None,
    );
    assert!(!o.status.success());
    let o = cli(
        &addr,
        tk,
        &["audit", "archive", "--before", "2999-01-01", f],
        None,
    );
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("must not exist"));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), text, "untouched");
}

/// Issue 16.2: the audit sink settings (`--audit-file`, `CREDVAULT_AUDIT_SYSLOG`) reach the server.
#[test]
fn audit_sink_settings_copy_the_trail_to_a_file_and_syslog() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let file = dir.path().join("trail.jsonl");
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let syslog = format!("udp://{}", udp.local_addr().unwrap());
    let data = dir.path().join("data");
    let _proc = server(
        &[
            "--dev",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
            data.to_str().unwrap(),
            "--audit-file",
            file.to_str().unwrap(),
            "--audit-file-required",
        ],
        &[("CREDVAULT_AUDIT_SYSLOG", &syslog)],
        port,
        dir.path(),
    );
    let addr = format!("http://127.0.0.1:{port}");
    let o = cli(
        &addr,
        Some(&dev_token(&data)),
        &["cred", "put", "a", "--secret-stdin"],
        Some("s"),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&file)
        .unwrap_or_default()
        .contains("credential.create")
    {
        assert!(Instant::now() < deadline, "no record in {}", file.display());
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut buf = [0u8; 65536];
    let n = udp.recv(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("<86>1 "));
}

/// Issue 16.2: refusals counted into a summary are not lost when the server stops: SIGTERM shuts it
/// down gracefully and the summary is written.
#[test]
fn counted_refusals_are_summarised_when_the_server_stops() {
    let dir = tempfile::tempdir().unwrap();
    let (proc, addr, _token) = dev_server(dir.path());
    for _ in 0..5 {
        let o = cli(
            &addr,
            None,
            &["login", "nosuchuser"],
            Some("a wrong password\n"),
        );
        assert!(!o.status.success());
    }
    let pid = proc.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let mut proc = proc;
    let deadline = Instant::now() + Duration::from_secs(20);
    while proc.0.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "the server did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let db = dir.path().join("data").join("credvault.db");
    let rows: Vec<(String,)> = tokio::runtime::Runtime::new().unwrap().block_on(async {
        use sqlx::Connection;
        let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
            .await
            .unwrap();
        sqlx::query_as("SELECT detail FROM audit_log WHERE action = 'auth.login' ORDER BY seq")
            .fetch_all(&mut c)
            .await
            .unwrap()
    });
    let details: Vec<Value> = rows
        .iter()
        .map(|(d,)| serde_json::from_str(d).unwrap())
        .collect();
    assert_eq!(
        details.len(),
        2,
        "the first refusal and one summary: {details:?}"
    );
    assert_eq!(details[1]["summary"], true);
    assert_eq!(details[1]["count"], 4);
}

/// Issue 17 from the command line: turning on the automatic change, its status, a change that
/// fails (the target is down: exit status 1 with the reason, the value unchanged), an unknown plugin
/// refused, and turning it off. (Changes on a real target: `tests/api/pwchange.rs`.)
#[test]
fn automatic_change_commands() {
    let tmp = tempfile::tempdir().unwrap();
    let (_srv, addr, root) = dev_server(tmp.path());
    let as_root = |args: &[&str]| {
        let mut a = args.to_vec();
        a.extend(["--format", "json"]);
        cli(&addr, Some(&root), &a, None)
    };
    let run = |args: &[&str]| ok_json(as_root(args));
    let fails = |args: &[&str]| {
        let o = as_root(args);
        assert!(!o.status.success(), "{args:?} succeeded");
        String::from_utf8(o.stderr).unwrap()
    };
    run(&["safe", "add", "db"]);
    // Nothing listens on this port: the target is down.
    let port = format!("Port={}", free_port());
    for (name, user, secret) in [
        ("pg-admin", "postgres", "admin-secret-1"),
        ("app", "app_user", "app-secret-1"),
    ] {
        run(&[
            "cred",
            "put",
            name,
            "--safe",
            "db",
            "--identifier",
            name,
            "--username",
            user,
            "--secret",
            secret,
            "--hostname",
            "pg1",
            "--ip",
            "127.0.0.1",
            "--property",
            &port,
        ]);
    }
    let st = run(&[
        "cred",
        "auto-change",
        "db/app",
        "--plugin",
        "postgresql",
        "--auth",
        "pg-admin",
        "--every-days",
        "30",
        "--length",
        "40",
        "--avoid",
        "0O1l",
    ]);
    assert_eq!(st["automatic_change"], true, "{st}");
    assert_eq!(st["plugin"], "postgresql");
    assert_eq!(st["template"], "alter-role");
    assert_eq!(st["every_hours"], 720);
    assert_eq!(
        (&st["password_length"], &st["password_avoid"]),
        (&json!(40), &json!("0O1l"))
    );
    assert!(st["next_run_at"].is_string(), "{st}");

    let e = fails(&["cred", "auto-change", "db/app", "--plugin", "SSH"]);
    assert!(e.contains("unknown plugin 'SSH'"), "{e}");

    let e = fails(&["cred", "rotate", "db/app"]);
    assert!(
        e.contains("not changed") && e.contains("unreachable"),
        "{e}"
    );
    let got = run(&["cred", "get", "db/app", "--secret"]);
    assert_eq!(
        (&got["secret"], &got["version"]),
        (&json!("app-secret-1"), &json!(2))
    );
    let st = run(&["cred", "rotation", "db/app"]);
    assert_eq!(
        (&st["last_result"], &st["failures"]),
        (&json!("failed"), &json!(1)),
        "{st}"
    );

    let st = run(&["cred", "auto-change", "db/app", "--off"]);
    assert_eq!(st["automatic_change"], false, "{st}");
    assert_eq!(st["next_run_at"], Value::Null, "{st}");
}
