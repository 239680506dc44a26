//! Metric names used by a PromQL expression, found with a small lexer (no evaluation).

const KEYWORDS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "inf",
    "nan",
    "atan2",
    // Aggregation operators, which may be followed by `by (...)` instead of `(`.
    "sum",
    "avg",
    "min",
    "max",
    "count",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
    "count_values",
    "group",
    "limitk",
    "limit_ratio",
];

/// The metric names an expression selects (identifiers that are not functions, keywords,
/// label names in `by (...)`-style clauses, label matchers, strings, ranges or numbers).
pub fn metric_names(expr: &str) -> Vec<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = Vec::new();
    let mut i = 0;
    let mut after_grouping_keyword = false;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' | '\'' | '`' => {
                i += 1;
                while i < chars.len() && chars[i] != c {
                    if chars[i] == '\\' {
                        i += 1;
                    }
                    i += 1;
                }
                i += 1;
            }
            '{' => i = skip_to(&chars, i, '}'),
            '[' => i = skip_to(&chars, i, ']'),
            '(' if after_grouping_keyword => {
                after_grouping_keyword = false;
                i = skip_to(&chars, i, ')');
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
                {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let mut j = i;
                while j < chars.len() && chars[j].is_whitespace() {
                    j += 1;
                }
                let is_call = j < chars.len() && chars[j] == '(';
                let lower = word.to_ascii_lowercase();
                if matches!(
                    lower.as_str(),
                    "by" | "without" | "on" | "ignoring" | "group_left" | "group_right"
                ) {
                    after_grouping_keyword = true;
                } else if !is_call && !KEYWORDS.contains(&lower.as_str()) && !names.contains(&word)
                {
                    names.push(word);
                }
            }
            c if c.is_ascii_digit() || c == '.' => {
                // Numbers and durations (5m, 1e3, 0.5).
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                    i += 1;
                }
            }
            _ => i += 1,
        }
    }
    names
}

fn skip_to(chars: &[char], mut i: usize, close: char) -> usize {
    let mut in_string = None;
    while i < chars.len() {
        let c = chars[i];
        match in_string {
            Some(_) if c == '\\' => i += 1,
            Some(q) if c == q => in_string = None,
            None if c == '"' || c == '\'' || c == '`' => in_string = Some(c),
            None if c == close => return i + 1,
            Some(_) | None => {}
        }
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::metric_names;

    #[test]
    fn finds_selected_metrics_only() {
        let expr = r#"histogram_quantile(0.95, sum by (job, le) (rate(http_server_request_duration_seconds_bucket{job=~"a|b", le!="+Inf"}[5m]))) > 0.5
            or on (job) job:slo_errors_per_request:ratio_rate1h * 14.4 and up{job="x"} offset 5m"#;
        assert_eq!(
            metric_names(expr),
            vec![
                "http_server_request_duration_seconds_bucket",
                "job:slo_errors_per_request:ratio_rate1h",
                "up"
            ]
        );
    }

    #[test]
    fn label_replace_strings_are_not_names() {
        let expr = r#"label_replace(vector(0), "reason", "none", "", "") or sum by (reason) (rate(kamachiq_workflows_failed_total[1m]))"#;
        assert_eq!(metric_names(expr), vec!["kamachiq_workflows_failed_total"]);
    }
}
