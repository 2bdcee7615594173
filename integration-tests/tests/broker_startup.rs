//! `kafka-server-start` refuses bad configuration and environments with one
//! clear error line and exit status 1, before touching any data.

use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use integration_tests::{ToolOutput, run_tool};

fn start_with(config: &str, dir: &Path) -> Result<ToolOutput> {
    let path = dir.join("server.properties");
    std::fs::write(&path, config)?;
    run_tool(
        "kafka-server-start",
        &[path.to_str().unwrap_or_default()],
        None,
        Duration::from_secs(30),
    )
}

fn error_lines(output: &ToolOutput) -> Vec<&str> {
    output
        .stderr
        .lines()
        .filter(|l| l.contains(" ERROR "))
        .collect()
}

fn base(dir: &Path) -> String {
    format!(
        "broker.id=0\nlisteners=PLAINTEXT://127.0.0.1:0\nlog.dirs={}\nzookeeper.connect=127.0.0.1:1\n",
        dir.join("logs").display()
    )
}

#[test]
fn a_missing_properties_file_is_one_error() -> Result<()> {
    let output = run_tool(
        "kafka-server-start",
        &["/nonexistent/server.properties"],
        None,
        Duration::from_secs(30),
    )?;
    assert_eq!(output.status.code(), Some(1));
    let errors = error_lines(&output);
    assert_eq!(errors.len(), 1, "{}", output.stderr);
    assert!(
        errors[0].contains("/nonexistent/server.properties"),
        "{}",
        errors[0]
    );
    Ok(())
}

#[test]
fn a_bad_value_names_key_value_and_file() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let output = start_with(&format!("{}port=abc\n", base(dir.path())), dir.path())?;
    assert_eq!(output.status.code(), Some(1));
    let errors = error_lines(&output);
    assert_eq!(errors.len(), 1, "{}", output.stderr);
    for part in ["port", "abc", "server.properties"] {
        assert!(
            errors[0].contains(part),
            "{part} missing from: {}",
            errors[0]
        );
    }
    assert!(
        !dir.path().join("logs").exists(),
        "nothing is created before the config is valid"
    );
    Ok(())
}

#[test]
fn a_port_in_use_is_one_error() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let taken = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = taken.local_addr()?.port();
    let config = base(dir.path()).replace(
        "listeners=PLAINTEXT://127.0.0.1:0",
        &format!("listeners=PLAINTEXT://127.0.0.1:{port}"),
    );
    let output = start_with(&config, dir.path())?;
    assert_eq!(output.status.code(), Some(1));
    let errors = error_lines(&output);
    assert_eq!(errors.len(), 1, "{}", output.stderr);
    assert!(errors[0].contains(&port.to_string()), "{}", errors[0]);
    assert!(errors[0].to_lowercase().contains("in use"), "{}", errors[0]);
    Ok(())
}

#[test]
fn an_unusable_log_dir_is_one_error() -> Result<()> {
    let dir = tempfile::tempdir()?;
    // A regular file where the log dir should be.
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, "x")?;
    let config = format!(
        "broker.id=0\nlisteners=PLAINTEXT://127.0.0.1:0\nlog.dirs={}\nzookeeper.connect=127.0.0.1:1\n",
        file.display()
    );
    let output = start_with(&config, dir.path())?;
    assert_eq!(output.status.code(), Some(1));
    let errors = error_lines(&output);
    assert_eq!(errors.len(), 1, "{}", output.stderr);
    assert!(errors[0].contains("not-a-dir"), "{}", errors[0]);
    Ok(())
}

#[test]
fn unknown_keys_are_warnings_and_usage_errors_exit_1() -> Result<()> {
    let output = run_tool("kafka-server-start", &[], None, Duration::from_secs(30))?;
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stderr.contains("USAGE"), "{}", output.stderr);

    let output = run_tool(
        "kafka-server-start",
        &["a.properties", "--bogus"],
        None,
        Duration::from_secs(30),
    )?;
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stderr.contains("--bogus"), "{}", output.stderr);
    Ok(())
}
