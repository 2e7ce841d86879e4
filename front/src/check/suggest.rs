//! Did-you-mean: the closest known name by edit distance, for `help` lines.
//!
//! Invariant: a suggestion is only made when it is close enough to be a plausible typo (at most
//! a third of the name's length, and never the name itself).

/// Edit distance with adjacent transpositions (optimal string alignment): `stpes` is one edit
/// from `steps`.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut m = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in m.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in m[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (m[i - 1][j] + 1)
                .min(m[i][j - 1] + 1)
                .min(m[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(m[i - 2][j - 2] + 1);
            }
            m[i][j] = v;
        }
    }
    m[a.len()][b.len()]
}

/// The closest candidate to `name`, if any is plausibly what was meant.
pub fn closest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (name.chars().count().max(3)) / 3;
    let candidates: Vec<&'a str> = candidates.into_iter().collect();
    // An abbreviation (`rand` for `random`) is a plausible typo too.
    let by_prefix = || {
        (name.chars().count() >= 3)
            .then(|| {
                candidates
                    .iter()
                    .copied()
                    .find(|c| c.starts_with(name) && *c != name)
            })
            .flatten()
    };
    candidates
        .iter()
        .copied()
        .filter(|c| *c != name)
        .enumerate()
        .map(|(i, c)| (edit_distance(&name.to_lowercase(), &c.to_lowercase()), i, c))
        .filter(|(d, _, _)| *d <= limit.max(1))
        // Ties go to the candidate listed first (callers list the preferred spelling first).
        .min_by_key(|(d, i, _)| (*d, *i))
        .map(|(_, _, c)| c)
        .or_else(by_prefix)
}

/// `did you mean `x`?` for the closest candidate.
pub fn did_you_mean<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    closest(name, candidates).map(|c| format!("did you mean `{c}`?"))
}

/// "`a`, `b` or `c`", for listing the allowed values.
pub fn one_of(options: &[&str]) -> String {
    let quoted: Vec<String> = options.iter().map(|o| format!("`{o}`")).collect();
    match quoted.len() {
        0 => String::new(),
        1 => quoted[0].clone(),
        n => format!("{} or {}", quoted[..n - 1].join(", "), quoted[n - 1]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance_and_suggestions() {
        assert_eq!(edit_distance("stpes", "steps"), 1);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(closest("stpes", ["steps", "seed", "tokens"]), Some("steps"));
        assert_eq!(
            closest("gpt2_smal", ["gpt2_small", "gpt2"]),
            Some("gpt2_small")
        );
        assert_eq!(closest("zzzzzz", ["steps", "seed"]), None);
        assert_eq!(closest("rand", ["random", "copy"]), Some("random"));
        assert_eq!(
            closest("stesp", ["steps", "tokens", "step", "token"]),
            Some("steps")
        );
        assert_eq!(one_of(&["a", "b", "c"]), "`a`, `b` or `c`");
    }
}
