//! The repository's Dockerfile read as its stages and instructions, enough
//! to check it against the manifests without building it.

use std::path::Path;

/// One instruction: `COPY`, `RUN`, ... with its arguments (continuation
/// lines joined).
#[derive(Debug, Clone)]
pub(crate) struct Instruction {
    pub(crate) keyword: String,
    pub(crate) args: String,
}

/// A `FROM` and what follows it.
#[derive(Debug, Clone)]
pub(crate) struct Stage {
    pub(crate) from: String,
    pub(crate) name: Option<String>,
    pub(crate) instructions: Vec<Instruction>,
}

impl Stage {
    pub(crate) fn all<'a>(&'a self, keyword: &'a str) -> impl Iterator<Item = &'a str> {
        self.instructions
            .iter()
            .filter(move |i| i.keyword == keyword)
            .map(|i| i.args.as_str())
    }
}

#[derive(Debug)]
pub(crate) struct Dockerfile {
    /// `ARG`s before the first `FROM`: name and default.
    pub(crate) global_args: Vec<(String, String)>,
    pub(crate) stages: Vec<Stage>,
}

impl Dockerfile {
    pub(crate) fn read(path: &Path) -> Dockerfile {
        let text =
            std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut logical = Vec::new();
        let mut current = String::new();
        for line in text.lines() {
            let trimmed = line.trim();
            if current.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
                continue;
            }
            if trimmed.starts_with('#') {
                continue; // a comment inside a continued instruction
            }
            match trimmed.strip_suffix('\\') {
                Some(head) => {
                    current.push_str(head);
                    current.push(' ');
                }
                None => {
                    current.push_str(trimmed);
                    logical.push(std::mem::take(&mut current));
                }
            }
        }
        let mut global_args = Vec::new();
        let mut stages: Vec<Stage> = Vec::new();
        for line in logical {
            let (keyword, args) = line
                .split_once(char::is_whitespace)
                .unwrap_or((line.as_str(), ""));
            let keyword = keyword.to_ascii_uppercase();
            let args = args.trim().to_owned();
            if keyword == "FROM" {
                let words: Vec<&str> = args.split_whitespace().collect();
                let name = match words.as_slice() {
                    [_, as_, name] if as_.eq_ignore_ascii_case("as") => Some((*name).to_owned()),
                    _ => None,
                };
                stages.push(Stage {
                    from: words[0].to_owned(),
                    name,
                    instructions: Vec::new(),
                });
            } else if let Some(stage) = stages.last_mut() {
                stage.instructions.push(Instruction { keyword, args });
            } else if keyword == "ARG" {
                let (name, default) = args.split_once('=').unwrap_or((args.as_str(), ""));
                global_args.push((name.to_owned(), default.to_owned()));
            }
        }
        Dockerfile {
            global_args,
            stages,
        }
    }

    /// `${NAME}` in a `FROM` replaced by the global `ARG`'s default.
    pub(crate) fn base_of(&self, stage: &Stage) -> String {
        let mut from = stage.from.clone();
        for (name, default) in &self.global_args {
            from = from.replace(&format!("${{{name}}}"), default);
        }
        from
    }

    /// The default of `ARG name=...` inside `stage`.
    pub(crate) fn stage_arg(stage: &Stage, name: &str) -> Option<String> {
        stage
            .all("ARG")
            .find_map(|a| a.strip_prefix(&format!("{name}=")).map(str::to_owned))
    }
}
