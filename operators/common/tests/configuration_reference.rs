//! `docs/configuration.md` names exactly the environment variables the operators read.
//!
//! The code side: the operators read the environment through `oaas_operator_common::env::Env`
//! (names as string literals, per-cluster names through `scope("<PATTERN>", ..)`) and, for
//! process plumbing, `std::env::var`/`var_os` and `EnvFilter::builder().with_env_var(..)`.
//! This test scans the non-test sources under `operators/*/src` (and `core/src`) for the
//! literals passed to those calls. The doc side: the backticked ALL_CAPS names in the first
//! column of the reference's tables (patterns such as `CRM_CLUSTER_<NAME>_URL` included).
//! Both sides must be equal; the failure lists what is missing on each.
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The `Env` methods that take a variable name first.
const ENV_METHODS: &[&str] = &[
    "get",
    "get_or",
    "string",
    "path",
    "require",
    "flag",
    "optional_flag",
    "number",
    "optional_number",
    "seconds",
    "positive_seconds",
];

/// Other calls whose first argument names an environment variable.
const OTHER_READERS: &[&str] = &["env::var", "env::var_os", "with_env_var"];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn the_configuration_reference_names_exactly_what_the_code_reads() {
    let root = repo_root();
    let mut read: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut files = Vec::new();
    for dir in ["operators", "core"] {
        collect_sources(&root.join(dir), &mut files);
    }
    assert!(
        !files.is_empty(),
        "no sources found under {}",
        root.display()
    );
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let shown = file
            .strip_prefix(&root)
            .unwrap_or(file)
            .display()
            .to_string();
        for name in variables_read(&text) {
            read.entry(name).or_default().insert(shown.clone());
        }
    }
    assert!(
        read.len() >= 20 && read.keys().any(|n| n.contains('<')),
        "the scan found too little to be right ({} names: {:?}); has the way config code reads \
         the environment changed? Update this test with it",
        read.len(),
        read.keys().collect::<Vec<_>>()
    );

    let doc_path = root.join("docs/configuration.md");
    let doc = std::fs::read_to_string(&doc_path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", doc_path.display()));
    let documented = variables_documented(&doc);

    let undocumented: Vec<String> = read
        .iter()
        .filter(|(name, _)| !documented.contains(*name))
        .map(|(name, files)| format!("  {name} (read in {})", join(files)))
        .collect();
    let unread: Vec<String> = documented
        .iter()
        .filter(|name| !read.contains_key(*name))
        .map(|name| format!("  {name}"))
        .collect();
    assert!(
        undocumented.is_empty() && unread.is_empty(),
        "docs/configuration.md and the code disagree.\n\
         Read by the code, missing from the reference (add a table row):\n{}\n\
         In the reference, read nowhere in the code (remove the row, or read it through \
         oaas_operator_common::env::Env):\n{}\n",
        or_none(&undocumented),
        or_none(&unread),
    );
}

fn join(files: &BTreeSet<String>) -> String {
    files.iter().cloned().collect::<Vec<_>>().join(", ")
}

fn or_none(lines: &[String]) -> String {
    if lines.is_empty() {
        "  (none)".into()
    } else {
        lines.join("\n")
    }
}

/// Every `.rs` file under `dir`'s `src` directories, except test modules in their own file.
fn collect_sources(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().to_string();
        if path.is_dir() {
            if name != "target" && name != "tests" && !name.starts_with('.') {
                collect_sources(&path, out);
            }
        } else if name.ends_with(".rs")
            && name != "tests.rs"
            && path.components().any(|c| c.as_os_str() == "src")
        {
            out.push(path);
        }
    }
}

/// The variable names a source file reads, test code excluded.
fn variables_read(source: &str) -> BTreeSet<String> {
    let code = strip_comments(source);
    // Unit tests come last in a file, after `#[cfg(test)]`.
    let code = match code.find("#[cfg(test)]") {
        Some(at) => &code[..at],
        None => &code[..],
    };
    let consts = string_consts(code);
    let literal_or_const = |arg: &str| -> Option<String> {
        string_literal(arg)
            .map(|(lit, _)| lit)
            .or_else(|| consts.get(identifier(arg)?).cloned())
    };
    // `let cluster = env.scope("CRM_CLUSTER_<NAME>_", name);` → cluster reads under a pattern.
    let mut scopes: BTreeMap<String, String> = BTreeMap::new();
    for (at, _) in code.match_indices(".scope(") {
        let Some(binding) = let_binding_before(code, at) else {
            continue;
        };
        if let Some(pattern) = literal_or_const(&code[at + ".scope(".len()..]) {
            scopes.insert(binding, pattern);
        }
    }
    let mut names = BTreeSet::new();
    for method in ENV_METHODS {
        let call = format!(".{method}(");
        for (at, _) in code.match_indices(&call) {
            let Some((name, _)) = string_literal(&code[at + call.len()..]) else {
                continue;
            };
            if !is_variable_name(&name) {
                continue;
            }
            let receiver = identifier_before(code, at);
            match receiver.and_then(|r| scopes.get(r)) {
                Some(pattern) => names.insert(format!("{pattern}{name}")),
                None => names.insert(name),
            };
        }
    }
    for reader in OTHER_READERS {
        let call = format!("{reader}(");
        for (at, _) in code.match_indices(&call) {
            // `env::var(` also matches inside `std::env::var_os(`' neighbours; only whole names.
            if code[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_') {
                continue;
            }
            if let Some(name) = literal_or_const(&code[at + call.len()..])
                && is_variable_name(&name)
            {
                names.insert(name);
            }
        }
    }
    names
}

/// `ABC_DEF`, or a pattern such as `CRM_CLUSTER_<NAME>_URL`.
fn is_variable_name(name: &str) -> bool {
    let plain = name.replace("<NAME>", "NAME");
    plain.starts_with(|c: char| c.is_ascii_uppercase())
        && plain
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// The string literal at the start of `text` (after spaces and a `&`), and what follows.
fn string_literal(text: &str) -> Option<(String, &str)> {
    let text = text.trim_start().trim_start_matches('&').trim_start();
    let rest = text.strip_prefix('"')?;
    let end = rest.find('"')?;
    let literal = &rest[..end];
    (!literal.contains('\\')).then(|| (literal.to_string(), &rest[end + 1..]))
}

/// The identifier at the start of `text`.
fn identifier(text: &str) -> Option<&str> {
    let text = text.trim_start();
    let end = text
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(text.len());
    (end > 0).then(|| &text[..end])
}

/// The identifier just before byte `at` (a method call's receiver).
fn identifier_before(code: &str, at: usize) -> Option<&str> {
    let before = code[..at].trim_end();
    let start = before
        .rfind(|c: char| !(c.is_alphanumeric() || c == '_'))
        .map_or(0, |i| i + 1);
    (start < before.len()).then(|| &before[start..])
}

/// `x` when the statement holding byte `at` starts `let x =` (or `let mut x =`).
fn let_binding_before(code: &str, at: usize) -> Option<String> {
    let statement_start = code[..at].rfind([';', '{', '}']).map_or(0, |i| i + 1);
    let statement = code[statement_start..at].trim_start();
    let rest = statement.strip_prefix("let ")?.trim_start();
    let rest = rest.strip_prefix("mut ").unwrap_or(rest);
    let name = identifier(rest)?;
    rest[name.len()..]
        .trim_start()
        .starts_with('=')
        .then(|| name.to_string())
}

/// `const NAME: &str = "value";` declarations.
fn string_consts(code: &str) -> BTreeMap<String, String> {
    let mut consts = BTreeMap::new();
    for (at, _) in code.match_indices("const ") {
        let rest = &code[at + "const ".len()..];
        let Some(name) = identifier(rest) else {
            continue;
        };
        let rest = rest[name.len()..].trim_start();
        let Some(rest) = rest.strip_prefix(':') else {
            continue;
        };
        let Some(rest) = rest.trim_start().strip_prefix("&str") else {
            continue;
        };
        let Some(rest) = rest.trim_start().strip_prefix('=') else {
            continue;
        };
        if let Some((value, _)) = string_literal(rest) {
            consts.insert(name.to_string(), value);
        }
    }
    consts
}

/// The source without `//` and `/* */` comments (string literals kept whole, so a URL's
/// `//` is not taken for a comment).
fn strip_comments(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut chars = source.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut previous = ' ';
                for c in chars.by_ref() {
                    if previous == '*' && c == '/' {
                        break;
                    }
                    previous = c;
                }
            }
            'r' if matches!(chars.peek(), Some('"' | '#'))
                && !out.ends_with(|p: char| p.is_alphanumeric() || p == '_') =>
            {
                // A raw string: r"..." or r#"..."#, with as many #s.
                out.push(c);
                let mut hashes = 0;
                while chars.peek() == Some(&'#') {
                    chars.next();
                    out.push('#');
                    hashes += 1;
                }
                if chars.peek() != Some(&'"') {
                    continue;
                }
                out.push(chars.next().unwrap());
                let closing: String = std::iter::once('"')
                    .chain((0..hashes).map(|_| '#'))
                    .collect();
                let mut body = String::new();
                for c in chars.by_ref() {
                    body.push(c);
                    if body.ends_with(&closing) {
                        break;
                    }
                }
                out.push_str(&body);
            }
            '"' => {
                out.push(c);
                let mut escaped = false;
                for c in chars.by_ref() {
                    out.push(c);
                    if escaped {
                        escaped = false;
                    } else if c == '\\' {
                        escaped = true;
                    } else if c == '"' {
                        break;
                    }
                }
            }
            '\'' => {
                // A char literal ('"' among them) or a lifetime; copy a char literal whole.
                out.push(c);
                let lookahead: String = chars.clone().take(12).collect();
                let literal_len = if lookahead.starts_with('\\') {
                    // '\n', '\'', '\\', '\u{..}': the closing quote comes after the escape.
                    lookahead.get(2..).and_then(|r| r.find('\'')).map(|i| i + 3)
                } else if lookahead.chars().nth(1) == Some('\'') {
                    Some(lookahead.chars().next().unwrap().len_utf8() + 1)
                } else {
                    None
                };
                if let Some(len) = literal_len {
                    let mut taken = 0;
                    while taken < len {
                        let c = chars.next().unwrap();
                        taken += c.len_utf8();
                        out.push(c);
                    }
                }
            }
            _ => out.push(c),
        }
    }
    out
}

/// The backticked variable names in the first column of the document's tables.
fn variables_documented(doc: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut in_code_block = false;
    for line in doc.lines() {
        let line = line.trim();
        if line.starts_with("```") {
            in_code_block = !in_code_block;
        }
        if in_code_block || !line.starts_with('|') {
            continue;
        }
        let first_cell = line[1..].split('|').next().unwrap_or_default();
        for (i, span) in first_cell.split('`').enumerate() {
            if i % 2 == 1 && is_variable_name(span) {
                names.insert(span.to_string());
            }
        }
    }
    names
}

#[test]
fn the_scanner_finds_parser_reads_scopes_and_std_reads_but_not_comments_or_tests() {
    let source = r#"
        const CLUSTER: &str = "CRM_CLUSTER_<NAME>_";
        // env.get("IN_A_COMMENT")
        fn parse(env: &Env) {
            let url = "http://example"; /* env.flag("IN_A_BLOCK", false) */
            let port = env.number("SERVER_PORT", 8080)?;
            let cluster = env.scope(CLUSTER, name);
            let url = cluster.require("URL", &format!("needed"))?;
            let quote = '"'; let tick = '\''; let host = env.get_or("SERVER_HOST", "127.0.0.1");
            let map_key = labels.get("app.kubernetes.io/name");
            let pod = std::env::var("POD_NAME");
            let filter = EnvFilter::builder().with_env_var("RUST_LOG");
        }
        #[cfg(test)]
        mod tests { fn t() { env.get("ONLY_IN_TESTS"); } }
    "#;
    let found: Vec<String> = variables_read(source).into_iter().collect();
    assert_eq!(
        found,
        [
            "CRM_CLUSTER_<NAME>_URL",
            "POD_NAME",
            "RUST_LOG",
            "SERVER_HOST",
            "SERVER_PORT"
        ]
    );
    let doc = "| Variable | Default |\n|---|---|\n| `A_B` | `x` |\n| `CRM_CLUSTER_<NAME>_URL` | |\n\
               | `C`, `D_1` | `NOT_FIRST_COLUMN` |\n```\n| `IN_CODE` |\n```\n";
    let documented: Vec<String> = variables_documented(doc).into_iter().collect();
    assert_eq!(documented, ["A_B", "C", "CRM_CLUSTER_<NAME>_URL", "D_1"]);
}
