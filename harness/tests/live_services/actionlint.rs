//! actionlint (v1.7.12, which `bash ci/setup` installs in
//! `$DUALCHECK_CACHE/actionlint/bin`; else the one on PATH) on what this
//! repository ships for GitHub Actions: its workflows (`.github/workflows/`),
//! the workflow users copy (`ci/github-actions.yml`) and the composite action
//! `action.yml`; any finding fails the test, printed as actionlint prints it.
//! actionlint runs shellcheck on the script of every `run:` step: the test
//! requires Debian's `shellcheck` on PATH (`bash ci/setup` installs it; without
//! it actionlint would skip the scripts silently), and a negative control
//! shows a script's finding is reported.
//!
//! actionlint lints workflows only: it takes no `action.yml` on its command
//! line, reads one only as a local `uses:` of a workflow (inputs, outputs,
//! `runs`), and does not lint a composite action's steps. So `action.yml` is
//! linted twice over: used by a workflow with every input and output, and its
//! steps as the steps of a job whose inputs are the action's (expressions,
//! the inputs of the actions it uses, and the scripts through shellcheck).
//! A negative control shows each is really checked.
//! Every script of `action.yml` also passes `bash -n` and reads the inputs
//! through `env:`, never `${{ }}` (an input spliced into a script would be a
//! shell injection). No YAML parser is a dependency: the action's layout
//! (top-level `inputs:`, `outputs:`, `runs:` with `steps:` last) is read as text.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The inputs and outputs `action.yml` promises (its README contract).
const INPUTS: [&str; 9] = [
    "impl",
    "cmd",
    "committed-sql",
    "schema",
    "template",
    "budget",
    "args",
    "out",
    "working-directory",
];
const OUTPUTS: [&str; 2] = ["verdict", "gate-dir"];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// actionlint where `ci/setup` installs it, else on PATH.
fn actionlint() -> PathBuf {
    let installed = dualcheck::env::cache::cache_dir().join("actionlint/bin/actionlint");
    crate::support::tool("actionlint", Some(installed.clone())).unwrap_or_else(|| {
        panic!(
            "actionlint is not installed: not at {} nor on PATH; run `bash ci/setup` (it installs actionlint v1.7.12 there)",
            installed.display()
        )
    })
}

/// shellcheck on PATH (`bash ci/setup` installs Debian's), which actionlint
/// runs on every `run:` script: without it actionlint skips them silently.
fn shellcheck() -> PathBuf {
    crate::support::tool("shellcheck", None).unwrap_or_else(|| {
        panic!("shellcheck is not on PATH; run `bash ci/setup` (it installs Debian's shellcheck, which actionlint runs on every `run:` script)")
    })
}

/// actionlint (with shellcheck) on `files` from `dir`: whether it found
/// nothing, and what it printed.
fn lint(dir: &Path, files: &[PathBuf]) -> (bool, String) {
    let bin = actionlint();
    let out = Command::new(&bin)
        .arg("-no-color")
        .arg(format!("-shellcheck={}", shellcheck().display()))
        .args(files)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", bin.display()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // 0: no problem; 1: problems found; 2, 3: a bad command line or a failure.
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "{} failed ({}): {text}",
        bin.display(),
        out.status
    );
    (out.status.success(), text)
}

fn action_text() -> String {
    let path = repo().join("action.yml");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The lines of the top-level mapping `key:` (up to the next top-level key).
fn top_level<'a>(text: &'a str, key: &str) -> Vec<&'a str> {
    let mut lines = text.lines().skip_while(|l| *l != format!("{key}:"));
    assert!(lines.next().is_some(), "action.yml has no top-level `{key}:`");
    lines
        .take_while(|l| l.is_empty() || l.starts_with(' ') || l.starts_with('#'))
        .collect()
}

/// The keys of a block at this indentation (`  name:` at 2).
fn keys(block: &[&str], indent: usize) -> Vec<String> {
    block
        .iter()
        .filter_map(|l| {
            let rest = l.strip_prefix(&" ".repeat(indent))?;
            let name = rest.strip_suffix(':')?;
            (!name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'))
                .then(|| name.to_string())
        })
        .collect()
}

/// The composite steps: the lines after `  steps:` in `runs:`.
fn steps(text: &str) -> Vec<&str> {
    let runs = top_level(text, "runs");
    assert!(
        runs.contains(&"  using: composite"),
        "action.yml is not a composite action"
    );
    let mut lines = runs.into_iter().skip_while(|l| *l != "  steps:");
    assert!(lines.next().is_some(), "action.yml has no `  steps:` under `runs:`");
    lines.collect()
}

/// Every `run:` script of a YAML text, with its line number (block scalars
/// `run: |` and one-line `run: CMD`).
fn scripts(text: &str) -> Vec<(usize, String)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut found = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let body = line.trim_start().trim_start_matches("- ");
        let Some(value) = body.strip_prefix("run:") else {
            continue;
        };
        let column = line.len() - body.len();
        let value = value.trim();
        if !value.starts_with('|') && !value.starts_with('>') {
            found.push((i + 1, value.to_string()));
            continue;
        }
        let block: Vec<&str> = lines[i + 1..]
            .iter()
            .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() > column)
            .copied()
            .collect();
        let indent = block
            .iter()
            .find(|l| !l.trim().is_empty())
            .map_or(0, |l| l.len() - l.trim_start().len());
        let script: Vec<&str> = block.iter().map(|l| l.get(indent..).unwrap_or("")).collect();
        found.push((i + 1, script.join("\n")));
    }
    found
}

/// A directory actionlint takes for a repository (`.git` and
/// `.github/workflows/`), holding `action.yml` and these workflows.
fn project(action: &str, workflows: &[(&str, String)]) -> (tempfile::TempDir, Vec<PathBuf>) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join(".git")).unwrap();
    let wf = dir.path().join(".github/workflows");
    std::fs::create_dir_all(&wf).unwrap();
    std::fs::write(dir.path().join("action.yml"), action).unwrap();
    let files = workflows
        .iter()
        .map(|(name, text)| {
            let path = wf.join(name);
            std::fs::write(&path, text).unwrap();
            path
        })
        .collect();
    (dir, files)
}

/// A workflow whose one job runs the action's steps, its inputs the action's.
fn steps_as_job(text: &str, extra_step: &str) -> String {
    let mut wf = String::from("on:\n  workflow_call:\n    inputs:\n");
    for input in keys(&top_level(text, "inputs"), 2) {
        wf += &format!("      {input}:\n        type: string\n");
    }
    wf += "jobs:\n  action:\n    runs-on: ubuntu-24.04\n    steps:\n";
    for line in steps(text) {
        if !line.is_empty() {
            wf += "  ";
        }
        wf += line;
        wf += "\n";
    }
    wf + extra_step
}

/// A workflow that uses the action (`uses: ./`) with every input and reads every output.
fn uses_action(text: &str, extra_input: &str) -> String {
    let mut wf = String::from(
        "on: push\njobs:\n  gate:\n    runs-on: ubuntu-24.04\n    steps:\n      - id: gate\n        uses: ./\n        with:\n",
    );
    for input in keys(&top_level(text, "inputs"), 2) {
        wf += &format!("          {input}: x\n");
    }
    wf += extra_input;
    wf += "      - run: echo \"$OUTPUTS\"\n        env:\n          OUTPUTS: >-\n";
    for output in keys(&top_level(text, "outputs"), 2) {
        wf += &format!("            ${{{{ steps.gate.outputs.{output} }}}}\n");
    }
    wf
}

#[test]
fn workflows_and_the_template_pass_actionlint() {
    let _slot = crate::support::beside_another();
    let root = repo();
    let mut files: Vec<PathBuf> = std::fs::read_dir(root.join(".github/workflows"))
        .expect(".github/workflows")
        .map(|e| e.unwrap().path())
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yml" | "yaml")))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no workflow in .github/workflows");
    files.push(root.join("ci/github-actions.yml"));
    let (clean, out) = lint(&root, &files);
    assert!(clean, "actionlint on {files:?}:\n{out}");
}

#[test]
fn actionlint_reports_shellcheck_findings_in_run_scripts() {
    let _slot = crate::support::beside_another();
    // Negative control: an unquoted variable (SC2086) in a `run:` script.
    let wf = "on: push\njobs:\n  a:\n    runs-on: ubuntu-24.04\n    steps:\n      - shell: bash\n        run: echo $UNQUOTED\n";
    let (dir, files) = project("", &[("control.yml", wf.to_string())]);
    let (clean, out) = lint(dir.path(), &files);
    assert!(
        !clean && out.contains("SC2086"),
        "actionlint did not report shellcheck's SC2086 in a run: script (is shellcheck run?):\n{out}"
    );
}

#[test]
fn action_yml_passes_actionlint_as_used_and_as_steps() {
    let _slot = crate::support::beside_another();
    let text = action_text();
    assert_eq!(keys(&top_level(&text, "inputs"), 2), INPUTS, "the inputs of action.yml");
    assert_eq!(
        keys(&top_level(&text, "outputs"), 2),
        OUTPUTS,
        "the outputs of action.yml"
    );

    // Each output is a value its step writes.
    let steps_text = steps(&text).join("\n");
    for line in top_level(&text, "outputs") {
        let Some(expr) = line.trim().strip_prefix("value: ${{ steps.") else {
            continue;
        };
        let (id, name) = expr.trim_end_matches(" }}").split_once(".outputs.").unwrap();
        assert!(
            steps_text.contains(&format!("id: {id}\n")),
            "output {name}: no step has id {id}"
        );
        assert!(
            steps_text.contains(&format!("{name}=")),
            "output {name}: its step never writes `{name}=`"
        );
    }

    let (dir, files) = project(
        &text,
        &[
            ("steps.yml", steps_as_job(&text, "")),
            ("uses.yml", uses_action(&text, "")),
        ],
    );
    for file in &files {
        let (clean, out) = lint(dir.path(), std::slice::from_ref(file));
        assert!(
            clean,
            "actionlint on action.yml ({}):\n{out}\n--- the workflow linted:\n{}",
            file.file_name().unwrap().to_string_lossy(),
            std::fs::read_to_string(file).unwrap()
        );
    }

    // Negative controls: an input the action does not have, given to it and
    // read by its steps, is reported (the workflows above are really checked).
    let (dir, files) = project(
        &text,
        &[
            (
                "steps.yml",
                steps_as_job(
                    &text,
                    "      - shell: bash\n        run: echo ${{ inputs.not-an-input }}\n",
                ),
            ),
            ("uses.yml", uses_action(&text, "          not-an-input: x\n")),
        ],
    );
    for file in &files {
        let (clean, out) = lint(dir.path(), std::slice::from_ref(file));
        assert!(
            !clean && out.contains("not-an-input"),
            "actionlint missed an unknown input in {}:\n{out}",
            file.display()
        );
    }
}

#[test]
fn action_yml_scripts_parse_and_read_inputs_from_env() {
    let _slot = crate::support::beside_another();
    let text = action_text();
    let scripts = scripts(&text);
    assert!(scripts.len() >= 4, "action.yml's scripts: {scripts:?}");
    let dir = tempfile::tempdir().unwrap();
    for (line, script) in scripts {
        assert!(
            !script.contains("${{"),
            "action.yml line {line}: a script holds `${{{{ }}}}`; pass the value through `env:`:\n{script}"
        );
        let path = dir.path().join(format!("line-{line}.sh"));
        std::fs::write(&path, &script).unwrap();
        let out = Command::new("bash").arg("-n").arg(&path).output().unwrap();
        assert!(
            out.status.success(),
            "action.yml line {line}: bash -n: {}\n{script}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
