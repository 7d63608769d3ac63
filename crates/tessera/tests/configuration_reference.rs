//! `docs/configuration.md` stays true: its table names exactly the keys the server
//! reads, each with the environment variable the code reads for it, the flag
//! `tessera server --help` offers for it, and the default `--print-config` shows; and
//! each flag's own help names the same variable and default.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeMap;
use std::process::Command;

use support::BINARY;
use tessera_server::ServerConfig;
use tessera_server::config::ENV_KEYS;

const REFERENCE: &str = include_str!("../../../docs/configuration.md");

/// One row of the reference's table.
#[derive(Debug)]
struct Row {
    variable: String,
    flag: String,
    default: String,
}

/// The configuration table's rows by key: the lines after its heading row, up to the
/// first line that is not part of it.
fn rows() -> BTreeMap<String, Row> {
    let mut rows = BTreeMap::new();
    let table = REFERENCE
        .lines()
        .skip_while(|line| !line.starts_with("| Key (TOML) |"))
        .skip(2)
        .take_while(|line| line.starts_with("| `"));
    for line in table {
        // `\|` stands for a pipe inside a cell.
        let cells: Vec<String> = line
            .replace("\\|", "\u{0}")
            .split('|')
            .map(|cell| cell.trim().replace('\u{0}', "|"))
            .collect();
        let [_, key, variable, flag, default, meaning, _] = cells.as_slice() else {
            panic!("a row of the table does not have five cells: {line}");
        };
        assert!(!meaning.is_empty(), "{key} has no meaning");
        let unquote = |cell: &str| cell.trim_matches('`').to_owned();
        let row = Row {
            variable: unquote(variable),
            flag: unquote(flag),
            default: default.clone(),
        };
        assert!(
            rows.insert(unquote(key), row).is_none(),
            "{key} is listed twice"
        );
    }
    rows
}

/// `tessera server --help`: each long flag with its help text.
fn server_flags() -> BTreeMap<String, String> {
    let output = Command::new(BINARY)
        .args(["server", "--help"])
        .env("COLUMNS", "1000")
        .output()
        .unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    let mut flags: BTreeMap<String, String> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in help.lines() {
        let trimmed = line.trim_start();
        if let Some(rest) = trimmed.strip_prefix("--") {
            let name = rest.split([' ', '=']).next().unwrap();
            current = Some(format!("--{name}"));
            flags.insert(format!("--{name}"), String::new());
        } else if trimmed.starts_with("-h,") || trimmed.starts_with("-V,") {
            current = None;
        } else if let Some(flag) = &current {
            let text = flags.get_mut(flag).unwrap();
            text.push(' ');
            text.push_str(trimmed);
        }
    }
    flags
}

/// The defaults `--print-config` shows for a configuration of nothing but defaults
/// (`key = "text"` or `key = number` lines); keys without a default, or with an empty
/// one, are absent.
fn printed_defaults() -> BTreeMap<String, String> {
    ServerConfig::default()
        .to_toml()
        .lines()
        .filter_map(|line| line.split_once(" = "))
        .map(|(key, value)| (key.to_owned(), value.trim_matches('"').to_owned()))
        .filter(|(_, value)| !value.is_empty())
        .collect()
}

#[test]
fn the_reference_lists_every_key_with_its_variable_and_flag() {
    let rows = rows();

    let documented: Vec<&String> = rows.keys().collect();
    let mut read: Vec<String> = ENV_KEYS.iter().map(|(key, _)| (*key).to_owned()).collect();
    read.sort();
    assert_eq!(documented, read.iter().collect::<Vec<_>>());
    for (key, variable) in ENV_KEYS {
        let row = &rows[key];
        assert_eq!(row.variable, variable, "the variable of {key}");
        assert_eq!(row.flag, format!("--{}", key.replace('_', "-")), "{key}");
    }
}

#[test]
fn every_flag_of_tessera_server_is_documented_and_names_its_variable() {
    let rows = rows();
    let flags = server_flags();

    for (key, row) in &rows {
        let help = flags
            .get(&row.flag)
            .unwrap_or_else(|| panic!("{} ({key}) is not a flag of tessera server", row.flag));
        assert!(
            help.contains(&format!("[env: {}]", row.variable)),
            "the help of {} does not name {}: {help}",
            row.flag,
            row.variable
        );
    }
    for flag in flags.keys() {
        let documented = rows.values().any(|row| &row.flag == flag)
            || ["--config", "--print-config"].contains(&flag.as_str());
        assert!(documented, "{flag} is missing from docs/configuration.md");
    }
    assert!(REFERENCE.contains("`--config FILE` / `TESSERA_CONFIG`"));
}

#[test]
fn the_documented_defaults_are_the_ones_the_server_uses() {
    let rows = rows();
    let flags = server_flags();
    let defaults = printed_defaults();

    for (key, row) in &rows {
        match defaults.get(key) {
            Some(value) => {
                assert_eq!(row.default, format!("`{value}`"), "the default of {key}");
                let help = &flags[&row.flag];
                assert!(
                    help.contains(&format!("[default: {value}]")),
                    "the help of {} does not say [default: {value}]: {help}",
                    row.flag
                );
            }
            None => assert!(
                row.default.starts_with("none"),
                "{key} has no default, but the reference says {}",
                row.default
            ),
        }
    }
    for key in defaults.keys() {
        assert!(
            rows.contains_key(key),
            "--print-config shows {key}, undocumented"
        );
    }
}
