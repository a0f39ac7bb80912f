//! Tests of problem reporting: the exact text for each bad input, several layers at once,
//! requirements, TOML syntax and unreadable files.

use super::{PASSWORD, problems, try_load};
use crate::config::*;

/// One bad input and the exact error text it must give.
struct Case<'a> {
    name: &'a str,
    file: Option<&'a str>,
    env: &'a [(&'a str, &'a str)],
    overrides: &'a [Override],
    want: &'a str,
}

#[test]
fn bad_values_give_exact_messages() {
    let cases = [
        Case {
            name: "unknown key in a table",
            file: Some("[receiver]\nbogus = 1"),
            env: &[],
            overrides: &[],
            want: "config.toml: unknown key `receiver.bogus`",
        },
        Case {
            name: "unknown table",
            file: Some("[web]\nport = 1"),
            env: &[],
            overrides: &[],
            want: "config.toml: unknown key `web`",
        },
        Case {
            name: "unknown top-level key",
            file: Some("listn = \":80\""),
            env: &[],
            overrides: &[],
            want: "config.toml: unknown key `listn`",
        },
        Case {
            name: "table name used as a key",
            file: Some("receiver = \"http://box\""),
            env: &[],
            overrides: &[],
            want: "config.toml: key `receiver`: expected a table, got string",
        },
        Case {
            name: "port from env",
            file: None,
            env: &[("XG2G_STREAM_PORT", "abc")],
            overrides: &[],
            want: "environment variable XG2G_STREAM_PORT: key `receiver.stream_port`: \
             expected a port number 1-65535, got \"abc\"",
        },
        Case {
            name: "port zero from env",
            file: None,
            env: &[("XG2G_RELAY_PORT", "0")],
            overrides: &[],
            want: "environment variable XG2G_RELAY_PORT: key `receiver.relay_port`: \
             expected a port number 1-65535, got \"0\"",
        },
        Case {
            name: "port out of range in file",
            file: Some("[receiver]\nstream_port = 70000"),
            env: &[],
            overrides: &[],
            want: "config.toml: key `receiver.stream_port`: expected a port number 1-65535, got 70000",
        },
        Case {
            name: "duration",
            file: None,
            env: &[("XG2G_OWI_TIMEOUT", "soon")],
            overrides: &[],
            want: "environment variable XG2G_OWI_TIMEOUT: key `receiver.timeout`: \
             expected a duration like \"5s\" or \"500ms\", got \"soon\"",
        },
        Case {
            name: "toml type mismatch",
            file: Some("[log]\nlevel = 3"),
            env: &[],
            overrides: &[],
            want: "config.toml: key `log.level`: expected a string, got integer",
        },
        Case {
            name: "toml string for a number",
            file: Some("[receiver]\nretries = \"3\""),
            env: &[],
            overrides: &[],
            want: "config.toml: key `receiver.retries`: expected an integer, got string",
        },
        Case {
            name: "toml list of the wrong things",
            file: Some("[receiver]\nbouquets = [\"HD\", 2]"),
            env: &[],
            overrides: &[],
            want: "config.toml: key `receiver.bouquets`: \
             expected a list of strings, got a list holding an integer",
        },
        Case {
            name: "listen from a flag",
            file: None,
            env: &[],
            overrides: &[Override::flag("listen", "nonsense", "--listen")],
            want: "flag --listen: key `listen`: \
             expected a listen address like \":8080\" or \"127.0.0.1:8080\", got \"nonsense\"",
        },
        Case {
            name: "url scheme",
            file: None,
            env: &[("XG2G_OWI_BASE", "ftp://x")],
            overrides: &[],
            want: "environment variable XG2G_OWI_BASE: key `receiver.base_url`: \
             expected an http:// or https:// URL, got \"ftp://x\"",
        },
        Case {
            name: "not a url",
            file: Some("public_url = \"tv.example.org\""),
            env: &[],
            overrides: &[],
            want: "config.toml: key `public_url`: \
             expected an http:// or https:// URL, got \"tv.example.org\"",
        },
        Case {
            name: "log format",
            file: None,
            env: &[("XG2G_LOG_FORMAT", "xml")],
            overrides: &[],
            want: "environment variable XG2G_LOG_FORMAT: key `log.format`: \
             expected one of json, pretty, got \"xml\"",
        },
        Case {
            name: "whole number",
            file: None,
            env: &[("XG2G_OWI_RETRIES", "-3")],
            overrides: &[],
            want: "environment variable XG2G_OWI_RETRIES: key `receiver.retries`: \
             expected a whole number, got \"-3\"",
        },
        Case {
            name: "whole number in file",
            file: Some("[receiver]\nretries = -3"),
            env: &[],
            overrides: &[],
            want: "config.toml: key `receiver.retries`: expected a whole number, got -3",
        },
        Case {
            name: "zero timeout",
            file: Some("[receiver]\ntimeout = \"0s\""),
            env: &[],
            overrides: &[],
            want: "config.toml: key `receiver.timeout`: must be greater than zero",
        },
        Case {
            name: "empty log level",
            file: None,
            env: &[("XG2G_LOG_LEVEL", " ")],
            overrides: &[],
            want: "environment variable XG2G_LOG_LEVEL: key `log.level`: must not be empty",
        },
        Case {
            name: "credentials in the receiver url",
            file: Some("[receiver]\nbase_url = \"http://root:pw@192.168.1.20\""),
            env: &[],
            overrides: &[],
            want: "config.toml: key `receiver.base_url`: \
             credentials belong in receiver.username and receiver.password, not in the URL",
        },
        Case {
            name: "credentials in the public url",
            file: None,
            env: &[("XG2G_PUBLIC_URL", "https://user@tv.example.org")],
            overrides: &[],
            want: "environment variable XG2G_PUBLIC_URL: key `public_url`: \
             must not contain a user name or password",
        },
        Case {
            name: "zero concurrency",
            file: Some("[receiver]\nmax_concurrency = 0"),
            env: &[],
            overrides: &[],
            want: "config.toml: key `receiver.max_concurrency`: must be at least 1",
        },
        Case {
            name: "cors origin with a path",
            file: None,
            env: &[("XG2G_HLS_CORS_ORIGIN", "https://tv.example.org/player")],
            overrides: &[],
            want: "environment variable XG2G_HLS_CORS_ORIGIN: key `hls.cors_origin`: must be \"*\", \
             empty, or an origin like \"https://tv.example.org\" (scheme, host, optional port)",
        },
        Case {
            name: "cors origin with a trailing slash",
            file: Some("[hls]\ncors_origin = \"https://tv.example.org/\""),
            env: &[],
            overrides: &[],
            want: "config.toml: key `hls.cors_origin`: must be \"*\", empty, or an origin like \
             \"https://tv.example.org\" (scheme, host, optional port)",
        },
        Case {
            name: "cors origin not http",
            file: Some("[hls]\ncors_origin = \"ftp://tv.example.org\""),
            env: &[],
            overrides: &[],
            want: "config.toml: key `hls.cors_origin`: must be \"*\", empty, or an origin like \
             \"https://tv.example.org\" (scheme, host, optional port)",
        },
        Case {
            name: "port override without a port",
            file: Some("[receiver]\nport_overrides = [\"1:0:19:283D:3FB:1:C00000:0:0:0:=0\"]"),
            env: &[],
            overrides: &[],
            want: "config.toml: key `receiver.port_overrides`: expected entries like \
             \"1:0:19:283D:3FB:1:C00000:0:0:0:=17999\", got \"1:0:19:283D:3FB:1:C00000:0:0:0:=0\"",
        },
        Case {
            name: "port override without a reference",
            file: None,
            env: &[("XG2G_PORT_OVERRIDES", "=17999")],
            overrides: &[],
            want: "environment variable XG2G_PORT_OVERRIDES: key `receiver.port_overrides`: expected \
             entries like \"1:0:19:283D:3FB:1:C00000:0:0:0:=17999\", got \"=17999\"",
        },
        Case {
            name: "hdhr device id",
            file: Some("[hdhr]\ndevice_id = \"xyz\""),
            env: &[],
            overrides: &[],
            want: "config.toml: key `hdhr.device_id`: must be 8 hexadecimal digits, e.g. \"10439EFD\"",
        },
        Case {
            name: "hdhr device id with a wrong check digit",
            file: None,
            env: &[("XG2G_HDHR_DEVICE_ID", "10439EFE")],
            overrides: &[],
            want: "environment variable XG2G_HDHR_DEVICE_ID: key `hdhr.device_id`: \
             fails the HDHomeRun check digit (Plex ignores such a tuner); 10439EFD would pass",
        },
        Case {
            name: "unknown override key",
            file: None,
            env: &[],
            overrides: &[Override::flag("receiver.bogus", "1", "--bogus")],
            want: "flag --bogus: unknown key `receiver.bogus`",
        },
    ];
    for case in cases {
        let got = problems(case.file, case.env, case.overrides, Requirements::None);
        assert_eq!(got, case.want, "case: {}", case.name);
    }
}

/// What the checks accept: an origin with a port, "*", empty; overrides with a port; a device
/// id with a valid check digit.
#[test]
fn good_values_pass_the_checks() {
    for (file, env) in [
        ("[hls]\ncors_origin = \"http://tv.example.org:8080\"", &[][..]),
        ("[hls]\ncors_origin = \"\"", &[]),
        ("", &[("XG2G_HLS_CORS_ORIGIN", "*")]),
        (
            "",
            &[(
                "XG2G_PORT_OVERRIDES",
                "1:0:19:283D:3FB:1:C00000:0:0:0:=17999,1:0:1:1:1:1:0:0:0:0:=8001",
            )],
        ),
        ("[hdhr]\ndevice_id = \"10439EFD\"", &[]),
    ] {
        if let Err(err) = try_load(Some(file), env, &[], Requirements::None) {
            panic!("{file} {env:?}: {err}");
        }
    }
}

#[test]
fn problems_from_every_layer_are_reported_together() {
    let file = "listen = 8080\n[receiver]\nbogus = true\nstream_port = 0\ntimeout = \"0s\"";
    let env = [
        ("XG2G_OWI_RETRIES", "many"),
        ("XG2G_SHUTDOWN_TIMEOUT", "soon"),
        // A valid later layer does not hide the file's bad value.
        ("XG2G_STREAM_PORT", "8001"),
    ];
    let overrides = [Override::flag("log.format", "xml", "--log-format")];
    let got = problems(Some(file), &env, &overrides, Requirements::Receiver);
    let want = [
        "config.toml: key `listen`: expected a string, got integer",
        "config.toml: unknown key `receiver.bogus`",
        "config.toml: key `receiver.stream_port`: expected a port number 1-65535, got 0",
        "environment variable XG2G_SHUTDOWN_TIMEOUT: key `shutdown_timeout`: \
         expected a duration like \"5s\" or \"500ms\", got \"soon\"",
        "environment variable XG2G_OWI_RETRIES: key `receiver.retries`: \
         expected a whole number, got \"many\"",
        "flag --log-format: key `log.format`: expected one of json, pretty, got \"xml\"",
        "receiver.base_url: required: set it in the config file or XG2G_OWI_BASE",
        "config.toml: key `receiver.timeout`: must be greater than zero",
    ];
    assert_eq!(got, want.join("\n"));

    let Err(ConfigError::Invalid { problems }) = try_load(Some(file), &env, &overrides, Requirements::Receiver) else {
        panic!("expected ConfigError::Invalid");
    };
    assert_eq!(problems[0].key.as_deref(), Some("listen"));
    assert_eq!(problems[0].source, Source::File("config.toml".into()));
    assert_eq!(problems[1].kind, ProblemKind::UnknownKey);
    assert_eq!(problems[3].source, Source::Env("XG2G_SHUTDOWN_TIMEOUT"));
    assert_eq!(problems[5].source, Source::Override("flag --log-format".into()));
    assert_eq!(problems[6].kind, ProblemKind::Missing);
}

#[test]
fn receiver_requirement() {
    let want = "receiver.base_url: required: set it in the config file or XG2G_OWI_BASE";
    assert_eq!(problems(None, &[], &[], Requirements::Receiver), want);
    let env = [("XG2G_OWI_BASE", "")];
    assert_eq!(problems(None, &env, &[], Requirements::Receiver), want);

    let env = [("XG2G_OWI_BASE", "http://192.168.1.20")];
    let loaded = try_load(None, &env, &[], Requirements::Receiver).unwrap();
    let url = loaded.config.receiver.base_url.unwrap();
    assert_eq!(url.as_str(), "http://192.168.1.20/");
    assert!(try_load(None, &[], &[], Requirements::None).is_ok());
}

#[test]
fn toml_syntax_error_is_one_line_naming_the_file() {
    let file = "listen = \":8080\"\n[receiver]\npassword = s3cr3t-P4ss\n";
    let got = problems(Some(file), &[("XG2G_OWI_RETRIES", "x")], &[], Requirements::None);
    let mut lines = got.lines();
    let first = lines.next().unwrap();
    assert!(
        first.starts_with("config.toml: invalid TOML: line 3, column 12: "),
        "{got}"
    );
    assert!(!first.contains(PASSWORD), "{got}");
    // The environment's problems still come with it.
    assert_eq!(
        lines.collect::<Vec<_>>(),
        ["environment variable XG2G_OWI_RETRIES: key `receiver.retries`: \
          expected a whole number, got \"x\""]
    );
}

#[test]
fn files_are_read_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, "[receiver]\nstream_port = \"abc\"\nbogus = 1\n").unwrap();
    let sources = Sources {
        file: Some(&path),
        env: &no_env,
        overrides: Vec::new(),
    };
    let err = load(&sources, Requirements::None).unwrap_err().to_string();
    let shown = path.display();
    assert_eq!(
        err,
        format!(
            "{shown}: unknown key `receiver.bogus`\n\
             {shown}: key `receiver.stream_port`: expected an integer, got string"
        )
    );

    std::fs::write(&path, "[receiver]\nstream_port = 8005\n").unwrap();
    let loaded = load(&sources, Requirements::None).unwrap();
    assert_eq!(loaded.config.receiver.stream_port, 8005);
    assert_eq!(loaded.origins["receiver.stream_port"], shown.to_string());

    let missing = dir.path().join("absent.toml");
    let sources = Sources {
        file: Some(&missing),
        ..sources
    };
    let err = load(&sources, Requirements::None).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }), "{err:?}");
    let prefix = format!("{}: cannot read config file: ", missing.display());
    assert!(err.to_string().starts_with(&prefix), "{err}");
}
