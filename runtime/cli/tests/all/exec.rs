//! `warden exec`: output passes through, the exit code is the program's (3
//! for a limit), `--json` reports it all, and the scratch dir, stdin and
//! arguments reach the program.

use std::process::{Command, Output};

use warden_tests::artifacts::{DATA_DIR, HELLO, PROGRAM};

use crate::*;

/// Runs `warden exec ARGS` in `cwd`, with the shared compiled cache (the
/// Python runtime takes seconds to compile), feeding `stdin`.
fn exec(cwd: &std::path::Path, args: &[&str], stdin: &str) -> Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_warden"))
        .current_dir(cwd)
        .env("WARDEN_DATA_DIR", DATA_DIR)
        .env_remove("WARDEN_RUNTIME_DIR")
        .arg("exec")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run warden");
    if let Some(mut input) = child.stdin.take() {
        let _ = input.write_all(stdin.as_bytes());
    }
    child.wait_with_output().expect("wait for warden")
}

#[test]
fn python_output_and_exit_code_pass_through() {
    let s = Scratch::new();
    std::fs::write(
        s.cwd.path().join("hi.py"),
        "import sys\nprint('out')\nprint('err', file=sys.stderr)\nsys.exit(7)\n",
    )
    .unwrap();
    let out = exec(s.cwd.path(), &["python", "hi.py"], "");
    assert_eq!(code(&out), 7, "{}", stderr(&out));
    assert_eq!(stdout(&out), "out\n");
    // Besides the program's own, only warden's note of a first compile
    // (when this test is the first to use the runtime).
    let program_stderr: String = stderr(&out)
        .lines()
        .filter(|line| !line.starts_with("warden: compiling python"))
        .map(|line| format!("{line}\n"))
        .collect();
    assert_eq!(program_stderr, "err\n");
}

#[test]
fn code_from_stdin_and_program_stdin_from_a_file() {
    let s = Scratch::new();
    std::fs::write(s.cwd.path().join("input.txt"), "fed").unwrap();
    let out = exec(
        s.cwd.path(),
        &["python", "-", "--stdin", "input.txt", "--", "one", "two"],
        "import sys\nprint(sys.stdin.read(), sys.argv[1:])\n",
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stdout(&out), "fed ['one', 'two']\n");
}

#[test]
fn json_reports_output_exit_code_usage_and_limit() {
    let s = Scratch::new();
    std::fs::write(s.cwd.path().join("ok.js"), "console.log('hi')").unwrap();
    let out = exec(s.cwd.path(), &["js", "ok.js", "--json"], "");
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["stdout"], "hi\n");
    assert_eq!(v["stderr"], "");
    assert_eq!(v["exit_code"], 0);
    assert_eq!(v["limit"], serde_json::Value::Null);
    assert!(v["fuel_used"].as_u64().unwrap() > 0);
    assert!(v["duration_ms"].is_u64());

    std::fs::write(s.cwd.path().join("spin.py"), "while True: pass").unwrap();
    let out = exec(
        s.cwd.path(),
        &["python", "spin.py", "--json", "--timeout", "500"],
        "",
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["limit"], "deadline");
    assert_eq!(v["exit_code"], serde_json::Value::Null);
}

#[test]
fn a_limit_exits_3_and_names_it() {
    let s = Scratch::new();
    std::fs::write(s.cwd.path().join("bomb.py"), "x = bytearray(1 << 30)").unwrap();
    let out = exec(s.cwd.path(), &["python", "bomb.py", "--memory", "64"], "");
    assert_exit(&out, 3, "limit exceeded: memory", &"bomb.py");
}

#[test]
fn files_are_copied_in_and_kept_only_on_request() {
    let s = Scratch::new();
    let files = s.cwd.path().join("files");
    std::fs::create_dir(&files).unwrap();
    std::fs::write(files.join("in.txt"), "input").unwrap();
    std::fs::write(
        s.cwd.path().join("job.py"),
        "import os\nprint(open('in.txt').read(), os.getcwd())\nopen('/work/out.txt', 'w').write('made')\n",
    )
    .unwrap();
    let out = exec(
        s.cwd.path(),
        &["python", "job.py", "--files", "files", "--keep", "kept"],
        "",
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stdout(&out), "input /work\n");
    assert_eq!(
        std::fs::read_to_string(s.cwd.path().join("kept/out.txt")).unwrap(),
        "made"
    );
    assert_eq!(
        std::fs::read_to_string(s.cwd.path().join("kept/in.txt")).unwrap(),
        "input"
    );
    // The source directory itself is never written.
    assert!(!files.join("out.txt").exists());
}

#[test]
fn a_wasi_program_runs_with_its_arguments() {
    let s = Scratch::new();
    std::fs::write(s.cwd.path().join("in.txt"), "in").unwrap();
    // warden's own stdin is not the program's: only --stdin is.
    let out = exec(
        s.cwd.path(),
        &[
            "wasm", PROGRAM, "--stdin", "in.txt", "--", "write", "f.txt", "x", "exit", "5",
        ],
        "not for the program",
    );
    assert_eq!(code(&out), 5, "{}", stderr(&out));
    assert!(
        stdout(&out).contains("args: [\"write\", \"f.txt\", \"x\", \"exit\", \"5\"]"),
        "{}",
        stdout(&out)
    );
    assert!(stdout(&out).contains("stdin: \"in\""), "{}", stdout(&out));
    assert!(stdout(&out).contains("wrote f.txt"), "{}", stdout(&out));
}

#[test]
fn bad_input_is_2() {
    let s = Scratch::new();
    let out = exec(s.cwd.path(), &["python", "missing.py"], "");
    assert_exit(&out, 2, "cannot read missing.py", &"missing.py");
    std::fs::write(s.cwd.path().join("a.py"), "print(1)").unwrap();
    let out = exec(
        s.cwd.path(),
        &["python", "a.py", "--runtime-dir", "nowhere"],
        "",
    );
    assert_exit(
        &out,
        2,
        "no python runtime at nowhere/python.wasm",
        &"--runtime-dir",
    );
    let out = exec(s.cwd.path(), &["python", "a.py", "--files", "nope"], "");
    assert_exit(&out, 2, "--files nope: not a directory", &"--files");
}

/// `--fuel none` (or 0) runs the code unmetered: it reports no fuel used,
/// and only the deadline stops a loop. Commands that cannot turn metering
/// off say so.
#[test]
fn fuel_none_runs_unmetered_under_the_deadline() {
    let s = Scratch::new();
    std::fs::write(s.cwd.path().join("ok.js"), "console.log(6 * 7)").unwrap();
    for off in ["none", "0"] {
        let out = exec(s.cwd.path(), &["js", "ok.js", "--fuel", off, "--json"], "");
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
        assert_eq!(v["stdout"], "42\n");
        assert_eq!(v["fuel_used"], 0, "{v}");
    }
    std::fs::write(s.cwd.path().join("spin.js"), "for (;;) {}").unwrap();
    let out = exec(
        s.cwd.path(),
        &[
            "js",
            "spin.js",
            "--fuel",
            "none",
            "--timeout",
            "300",
            "--json",
        ],
        "",
    );
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["limit"], "deadline", "{v}");

    let out = exec(s.cwd.path(), &["js", "ok.js", "--fuel", "lots"], "");
    assert_exit(
        &out,
        2,
        "\"lots\" is not a number of fuel units",
        &"--fuel lots",
    );
    let out = warden(
        s.cwd.path(),
        std::path::Path::new(DATA_DIR),
        &[
            "tool", "call", HELLO, "greet", "--args", "{}", "--fuel", "none",
        ],
    );
    assert_exit(&out, 2, "only `warden exec` does", &"tool call --fuel none");
}

/// Python's `urllib.request.urlopen` goes through the host: a granted host
/// answers, an ungranted one is refused naming the grant, a redirect is
/// followed only while each hop is granted, and an error status is urllib's
/// HTTPError.
#[test]
fn python_http_goes_through_the_network_policy() {
    use warden_tests::server::{RecordingServer, Reply};

    let s = Scratch::new();
    let granted = RecordingServer::start(Reply::Body("hello from the granted host".into()));
    let ungranted = RecordingServer::start(Reply::Body("SHOULD-NOT-BE-READ".into()));
    let hop = RecordingServer::start(Reply::Redirect(format!("{}/next", granted.origin())));
    let away = RecordingServer::start(Reply::Redirect(format!("{}/x", ungranted.origin())));
    std::fs::write(
        s.cwd.path().join("fetch.py"),
        "import sys, urllib.request, urllib.error\n\
         try:\n    with urllib.request.urlopen(sys.argv[1]) as r:\n        print(r.status, r.geturl(), r.read().decode())\n\
         except urllib.error.URLError as e:\n    print('refused:', e.reason)\n    sys.exit(3)\n",
    )
    .unwrap();
    let fetch = |url: String, grants: &[&str]| {
        let mut args = vec!["python", "fetch.py"];
        for g in grants {
            args.extend(["--allow-host", g]);
        }
        args.extend(["--", &url]);
        exec(s.cwd.path(), &args, "")
    };

    let out = fetch(format!("{}/page", granted.origin()), &[&granted.origin()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(
        stdout(&out).trim(),
        format!("200 {}/page hello from the granted host", granted.origin())
    );

    let out = fetch(format!("{}/page", ungranted.origin()), &[&granted.origin()]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!(
            "refused by the operator's network policy; it needs a grant such as --allow-host {}",
            ungranted.origin()
        )),
        "{}",
        stdout(&out)
    );

    // A redirect between granted hosts is followed, one to an ungranted host
    // is refused, and the ungranted host never hears of it.
    let out = fetch(
        format!("{}/start", hop.origin()),
        &[&hop.origin(), &granted.origin()],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with(&format!("200 {}/next", granted.origin())),
        "{}",
        stdout(&out)
    );
    let out = fetch(format!("{}/start", away.origin()), &[&away.origin()]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!("--allow-host {}", ungranted.origin())),
        "{}",
        stdout(&out)
    );
    assert!(ungranted.hits().is_empty(), "{:?}", ungranted.hits());
    assert_eq!(away.hits(), vec!["GET /start HTTP/1.1"]);
}
