//! The VS Code grammar (`editors/vscode/syntaxes/prog.tmLanguage.json`) against the language:
//! its keywords are the pest grammar's, and its option values are every value the checker
//! accepts by name, so a new keyword or option fails here until the editor knows it.

use std::collections::BTreeSet;

use progc_front::check::{INIT_OPTIONS, SPLIT_OPTIONS, TOKENIZER_FUNCS};
use progc_front::plan::spec::{
    CopyLayout, DataFormat, DecayShape, OptStatePolicy, Placement, ResidualScaling, Tokenizer,
};

const PEST: &str = include_str!("../../grammar/prog.pest");
const TM: &str = include_str!("../../editors/vscode/syntaxes/prog.tmLanguage.json");

/// The alternatives of the first `\b(a|b|c)\b` group in a TextMate regex.
fn alternatives(regex: &str) -> BTreeSet<String> {
    let start = regex.find("\\b(").map(|i| i + 3).unwrap_or(0);
    let end = start + regex[start..].find(')').unwrap_or(regex.len() - start);
    regex[start..end].split('|').map(String::from).collect()
}

fn tm() -> serde_json::Value {
    serde_json::from_str(TM).expect("the TextMate grammar is JSON")
}

#[test]
fn the_editor_knows_every_keyword_of_the_grammar() {
    let rule = &PEST[PEST.find("keyword = @{").expect("a keyword rule")..];
    let rule = &rule[..rule.find('}').unwrap()];
    let ours: BTreeSet<String> = rule
        .split('"')
        .skip(1)
        .step_by(2)
        .map(String::from)
        .collect();
    assert!(ours.len() >= 10, "{ours:?}");

    let repo = &tm()["repository"];
    let mut theirs = alternatives(repo["definitions"]["match"].as_str().unwrap());
    for p in repo["keywords"]["patterns"].as_array().unwrap() {
        let m = p["match"].as_str().unwrap();
        if m.contains("\\b(") {
            theirs.extend(alternatives(m));
        } else {
            theirs.insert(
                m.trim_start_matches("\\b")
                    .trim_end_matches("\\b")
                    .to_string(),
            );
        }
    }
    assert_eq!(theirs, ours);
}

#[test]
fn the_editor_knows_every_option_value() {
    let mut ours: BTreeSet<String> = ["none", "true", "false"].map(String::from).into();
    let lists: [&[&str]; 10] = [
        ResidualScaling::NAMES,
        &Tokenizer::NAMES,
        DataFormat::NAMES,
        DecayShape::NAMES,
        CopyLayout::NAMES,
        Placement::NAMES,
        OptStatePolicy::NAMES,
        INIT_OPTIONS,
        SPLIT_OPTIONS,
        TOKENIZER_FUNCS,
    ];
    for list in lists {
        ours.extend(list.iter().map(|s| s.to_string()));
    }
    let theirs = alternatives(tm()["repository"]["options"]["match"].as_str().unwrap());
    assert_eq!(theirs, ours);
}
