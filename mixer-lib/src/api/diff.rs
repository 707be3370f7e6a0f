//! Unified diffs between two scenario versions.

/// The unified diff (three lines of context) from `old` to `new`, with `---`/`+++` headers
/// naming them; empty when the texts are equal.
pub(super) fn unified(old_name: &str, old: &str, new_name: &str, new: &str) -> String {
    if old == new {
        return String::new();
    }
    similar::TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(3)
        .header(old_name, new_name)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::unified;

    #[test]
    fn a_changed_line_shows_as_removed_and_added_under_headers() {
        let diff = unified(
            "demo:1.0.0",
            "a: 1\nb: 2\nc: 3\n",
            "demo:1.1.0",
            "a: 1\nb: 20\nc: 3\n",
        );
        assert!(
            diff.starts_with("--- demo:1.0.0\n+++ demo:1.1.0\n"),
            "{diff}"
        );
        assert!(diff.contains("\n-b: 2\n+b: 20\n"), "{diff}");
        assert_eq!(unified("x", "same\n", "y", "same\n"), "");
    }
}
