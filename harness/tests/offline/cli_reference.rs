//! docs/cli.md, the command-line reference, is generated from the binary's
//! own help by `scripts/cli-reference`: it must be exactly what the script
//! makes of the binary this suite built, never edited by hand.

use std::process::Command;

#[test]
fn the_cli_reference_is_the_scripts_output_from_the_binarys_help() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let out = Command::new("bash")
        .current_dir(root)
        .args(["scripts/cli-reference", env!("CARGO_BIN_EXE_dualcheck")])
        .output()
        .expect("bash runs scripts/cli-reference");
    assert!(
        out.status.success(),
        "scripts/cli-reference failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let generated = String::from_utf8(out.stdout).expect("the help is UTF-8");
    let committed = std::fs::read_to_string(format!("{root}/docs/cli.md")).unwrap_or_default();
    if generated != committed {
        // The first line that differs, so the message says what changed.
        let first = generated
            .lines()
            .zip(committed.lines())
            .enumerate()
            .find(|(_, (g, c))| g != c)
            .map(|(n, (g, c))| format!("line {}:\n  docs/cli.md: {c}\n  the help:    {g}", n + 1))
            .unwrap_or_else(|| {
                format!(
                    "docs/cli.md has {} lines, the help makes {}",
                    committed.lines().count(),
                    generated.lines().count()
                )
            });
        panic!(
            "docs/cli.md differs from the binary's help ({first}).\n\
             Regenerate it from the repository's root: \
             `cargo build -p dualcheck && scripts/cli-reference > docs/cli.md` \
             (with CARGO_TARGET_DIR set, the script finds the binary there; or name it: \
             `scripts/cli-reference PATH/TO/dualcheck > docs/cli.md`)"
        );
    }
}
