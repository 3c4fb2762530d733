//! The real binary on bad and good config files: exit codes and messages operators see.

use std::process::Command;

use puerta_tests::{puerta_bin, workspace_root};

fn run(args: &[&std::ffi::OsStr]) -> anyhow::Result<(Option<i32>, String)> {
    let out = Command::new(puerta_bin())
        .args(args)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .output()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((out.status.code(), text))
}

#[test]
fn bad_config_exits_2_naming_file_key_and_line() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let cases = [
        // (file body, key the message must name, line)
        (
            "mode = \"mongodb\"\nlisten_addr = \"127.0.0.1:1\"\n[mongodb]\nmongos_endpoints = [\"a:1\"]\nhealth_chek_interval_sec = 5\n",
            "health_chek_interval_sec",
            5,
        ),
        (
            "mode = \"mongodb\"\nlisten_addr = \"127.0.0.1:1\"\nmax_connections = \"many\"\n[mongodb]\nmongos_endpoints = [\"a:1\"]\n",
            "`max_connections`",
            3,
        ),
        (
            "mode = \"mongodb\"\nlisten_addr = \"127.0.0.1:1\"\n\n[mongodb]\nmongos_endpoints = []\n",
            "mongodb.mongos_endpoints",
            5,
        ),
        (
            "mode = \"mongodb\"\nlisten_addr = \"127.0.0.1:1\"\n[mongodb]\nmongos_endpoints = [\"a:1\", \"b:x\"]\n",
            "mongodb.mongos_endpoints",
            4,
        ),
        (
            "mode = \"mongodb\"\nlisten_addr = \"127.0.0.1:1\"\n[mongodb]\nmongos_endpoints = [\"a:1\"]\nhealth_fall = 0\n",
            "mongodb.health_fall",
            5,
        ),
    ];
    for (i, (body, key, line)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("bad{i}.toml"));
        std::fs::write(&path, body)?;
        for check in [false, true] {
            let mut args = vec![std::ffi::OsStr::new("--config"), path.as_os_str()];
            if check {
                args.push("--check".as_ref());
            }
            let (code, text) = run(&args)?;
            assert_eq!(code, Some(2), "case {i}: {text}");
            let located = format!("{}:{line}:", path.display());
            assert!(text.contains(&located), "case {i}: no {located} in {text}");
            assert!(text.contains(key), "case {i}: no {key} in {text}");
        }
    }
    Ok(())
}

#[test]
fn shipped_mongodb_example_passes_check() -> anyhow::Result<()> {
    let path = workspace_root().join("config/mongodb.toml");
    let (code, text) = run(&["--check".as_ref(), "--config".as_ref(), path.as_os_str()])?;
    assert_eq!(code, Some(0), "{text}");
    Ok(())
}
