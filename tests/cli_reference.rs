//! docs/cli.md is the command line's reference: it must be what the binary's own definitions
//! generate, and every flag each subcommand's `--help` lists must be in it.

use std::collections::BTreeSet;
use std::process::Command;

fn committed() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/cli.md")).expect("docs/cli.md")
}

#[test]
fn the_reference_is_generated_from_the_command_line() {
    let (committed, current) = (committed(), samstream::cli::reference());
    if committed != current {
        let first = committed
            .lines()
            .zip(current.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(committed.lines().count().min(current.lines().count()));
        panic!(
            "docs/cli.md is out of date (first difference at line {}): regenerate it with `samstream cli-reference > docs/cli.md`\ncommitted: {:?}\ncurrent:   {:?}",
            first + 1,
            committed.lines().nth(first),
            current.lines().nth(first)
        );
    }
}

#[test]
fn every_flag_of_every_help_page_is_documented() {
    let reference = committed();
    let pages = [
        vec!["serve"],
        vec!["client", "image"],
        vec!["client", "video"],
        vec!["client", "camera"],
        vec!["client", "url"],
        vec!["client", "source"],
        vec!["bench"],
        vec!["soak"],
    ];
    for page in pages {
        let output = Command::new(env!("CARGO_BIN_EXE_samstream")).args(&page).arg("--help").output().unwrap();
        assert!(output.status.success(), "{page:?} --help");
        let help = String::from_utf8_lossy(&output.stdout);
        // The options' own lines (`  -h, --help`, `      --server <SERVER>`), not flags named in help texts.
        let flags: BTreeSet<&str> = help
            .lines()
            .map(str::trim_start)
            .filter(|line| line.starts_with('-'))
            .filter_map(|line| line.split_whitespace().find(|w| w.starts_with("--")))
            .map(|w| w.trim_end_matches(','))
            .collect();
        let section = reference
            .split(&format!("\n## `samstream {}`\n", page.join(" ")))
            .nth(1)
            .unwrap_or_else(|| panic!("docs/cli.md has no section for {page:?}"));
        let section = section.split("\n## ").next().unwrap();
        let missing: Vec<&&str> = flags.iter().filter(|f| **f != "--help" && !section.contains(&format!("`{f}"))).collect();
        assert!(missing.is_empty(), "{page:?}: --help lists {missing:?}, docs/cli.md does not");
        eprintln!("{page:?}: {} flags, all documented", flags.len());
    }
}
