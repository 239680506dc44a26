//! Goal decomposition: a goal becomes one task per clause.
//!
//! The goal is split into sentences (`.`, `!`, `?`, `;`, new lines), then each sentence into
//! clauses at sequence words (`then`; and `first`, `next`, `finally`, `afterwards`, `lastly` at
//! the start of a clause), at `and` when an action verb follows, and at a comma followed by an
//! action verb. Each task gets a kind from its verb, dependencies (the previous task when a
//! sequence word introduced it, and any earlier task whose subject it shares), and a fingerprint
//! that identifies the task across runs.

use std::collections::BTreeSet;

use serde::Serialize;

/// The most tasks a goal may have.
pub(crate) const MAX_TASKS: usize = 20;

/// What kind of work a task is, from its verb.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum TaskKind {
    Research,
    Write,
    Code,
    Review,
    Operate,
    Plan,
    Other,
}

/// One task of a plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct PlannedTask {
    pub(crate) description: String,
    pub(crate) kind: TaskKind,
    /// Indexes of earlier tasks this one needs.
    pub(crate) depends_on: Vec<usize>,
    /// A stable identifier of the task's text (16 hex digits).
    pub(crate) fingerprint: String,
}

const SEQUENCE_WORDS: &[&str] = &["then", "first", "next", "finally", "afterwards", "lastly"];

const VERBS: &[(&str, TaskKind)] = &[
    ("research", TaskKind::Research),
    ("find", TaskKind::Research),
    ("collect", TaskKind::Research),
    ("gather", TaskKind::Research),
    ("analyze", TaskKind::Research),
    ("analyse", TaskKind::Research),
    ("compare", TaskKind::Research),
    ("investigate", TaskKind::Research),
    ("measure", TaskKind::Research),
    ("list", TaskKind::Research),
    ("estimate", TaskKind::Research),
    ("write", TaskKind::Write),
    ("draft", TaskKind::Write),
    ("summarize", TaskKind::Write),
    ("summarise", TaskKind::Write),
    ("translate", TaskKind::Write),
    ("email", TaskKind::Write),
    ("send", TaskKind::Write),
    ("prepare", TaskKind::Write),
    ("document", TaskKind::Write),
    ("outline", TaskKind::Write),
    ("present", TaskKind::Write),
    ("share", TaskKind::Write),
    ("notify", TaskKind::Write),
    ("build", TaskKind::Code),
    ("implement", TaskKind::Code),
    ("fix", TaskKind::Code),
    ("test", TaskKind::Code),
    ("refactor", TaskKind::Code),
    ("create", TaskKind::Code),
    ("generate", TaskKind::Code),
    ("migrate", TaskKind::Code),
    ("run", TaskKind::Code),
    ("review", TaskKind::Review),
    ("check", TaskKind::Review),
    ("verify", TaskKind::Review),
    ("approve", TaskKind::Review),
    ("deploy", TaskKind::Operate),
    ("release", TaskKind::Operate),
    ("publish", TaskKind::Operate),
    ("update", TaskKind::Operate),
    ("delete", TaskKind::Operate),
    ("archive", TaskKind::Operate),
    ("transfer", TaskKind::Operate),
    ("drop", TaskKind::Operate),
    ("wipe", TaskKind::Operate),
    ("plan", TaskKind::Plan),
    ("design", TaskKind::Plan),
    ("schedule", TaskKind::Plan),
    ("organize", TaskKind::Plan),
    ("book", TaskKind::Plan),
];

/// Words too common to tie two tasks together.
const STOP_WORDS: &[&str] = &[
    "the", "a", "an", "of", "to", "for", "with", "and", "or", "in", "on", "at", "by", "from", "it",
    "its", "this", "that", "these", "those", "our", "my", "your", "their", "all", "new", "about",
    "into", "them", "then",
];

/// Lowercase letters and digits only.
fn normalize(word: &str) -> String {
    word.chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

fn verb_kind(word: &str) -> Option<TaskKind> {
    let word = normalize(word);
    VERBS.iter().find(|(v, _)| *v == word).map(|(_, k)| *k)
}

/// A clause and whether a sequence word introduced it.
struct Clause {
    words: Vec<String>,
    sequential: bool,
}

fn split_sentence(sentence: &str, clauses: &mut Vec<Clause>) {
    let words: Vec<&str> = sentence.split_whitespace().collect();
    let mut current = Clause {
        words: Vec::new(),
        sequential: false,
    };
    let close = |current: &mut Clause, clauses: &mut Vec<Clause>, sequential_next: bool| {
        if current
            .words
            .iter()
            .any(|w| w.chars().any(char::is_alphabetic))
        {
            clauses.push(std::mem::replace(
                current,
                Clause {
                    words: Vec::new(),
                    sequential: sequential_next,
                },
            ));
        } else {
            current.words.clear();
            current.sequential |= sequential_next;
        }
    };
    for (i, word) in words.iter().enumerate() {
        let key = normalize(word);
        let next_is_verb = words.get(i + 1).is_some_and(|w| verb_kind(w).is_some());
        let next_is_sequence = words
            .get(i + 1)
            .is_some_and(|w| SEQUENCE_WORDS.contains(&normalize(w).as_str()));
        let at_clause_start = current.words.is_empty();
        let after_comma = i > 0 && words[i - 1].ends_with(',');
        if key == "then"
            || (SEQUENCE_WORDS.contains(&key.as_str()) && (at_clause_start || after_comma))
        {
            close(&mut current, clauses, key != "first");
        } else if key == "and" && (next_is_verb || next_is_sequence || at_clause_start) {
            close(&mut current, clauses, false);
        } else {
            current.words.push((*word).to_owned());
            if word.ends_with(',') && next_is_verb {
                close(&mut current, clauses, false);
            }
        }
    }
    close(&mut current, clauses, false);
}

/// The content words of a description, for tying tasks together.
fn subjects(description: &str) -> BTreeSet<String> {
    description
        .split_whitespace()
        .skip(1) // the verb
        .map(normalize)
        .filter(|w| w.len() >= 4 && !STOP_WORDS.contains(&w.as_str()))
        .collect()
}

/// A stable fingerprint of the task text: FNV-1a, then 4096 rounds of `SplitMix64` mixing (a
/// little deterministic work per task, as a real planner's scoring would be).
fn fingerprint(description: &str) -> String {
    let mut state = description
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        });
    for _ in 0..4096 {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        state ^= z ^ (z >> 31);
    }
    format!("{state:016x}")
}

/// Splits `goal` into tasks (see the module docs). An empty result means the goal has no
/// actionable clause.
pub(crate) fn decompose(goal: &str) -> Vec<PlannedTask> {
    let mut clauses = Vec::new();
    for sentence in goal.split(['.', '!', '?', ';', '\n']) {
        split_sentence(sentence, &mut clauses);
    }
    let mut tasks: Vec<PlannedTask> = Vec::with_capacity(clauses.len());
    let mut task_subjects: Vec<BTreeSet<String>> = Vec::with_capacity(clauses.len());
    for clause in clauses {
        let description = clause
            .words
            .join(" ")
            .trim_matches(|c: char| c == ',' || c == ':' || c.is_whitespace())
            .to_owned();
        let kind = clause
            .words
            .first()
            .and_then(|w| verb_kind(w))
            .unwrap_or(TaskKind::Other);
        let own = subjects(&description);
        let index = tasks.len();
        let mut depends_on: Vec<usize> = task_subjects
            .iter()
            .enumerate()
            .filter(|(_, earlier)| !earlier.is_disjoint(&own))
            .map(|(i, _)| i)
            .collect();
        if clause.sequential && index > 0 && !depends_on.contains(&(index - 1)) {
            depends_on.push(index - 1);
        }
        tasks.push(PlannedTask {
            fingerprint: fingerprint(&description),
            description,
            kind,
            depends_on,
        });
        task_subjects.push(own);
    }
    tasks
}

#[cfg(test)]
mod tests {
    use super::*;

    fn descriptions(goal: &str) -> Vec<String> {
        decompose(goal).into_iter().map(|t| t.description).collect()
    }

    #[test]
    fn splits_on_sentences_sequence_words_and_verb_conjunctions() {
        assert_eq!(
            descriptions(
                "Research the top three competitors and summarize their pricing, then draft \
                 a launch email. Finally, schedule a review meeting"
            ),
            [
                "Research the top three competitors",
                "summarize their pricing",
                "draft a launch email",
                "schedule a review meeting",
            ]
        );
    }

    #[test]
    fn and_between_nouns_stays_in_one_task() {
        assert_eq!(
            descriptions("Compare cats and dogs; write the next chapter"),
            ["Compare cats and dogs", "write the next chapter"]
        );
    }

    #[test]
    fn comma_separated_actions_are_separate_tasks() {
        let tasks = decompose("Collect the logs, analyze the errors, fix the parser");
        let kinds: Vec<TaskKind> = tasks.iter().map(|t| t.kind).collect();
        assert_eq!(
            kinds,
            [TaskKind::Research, TaskKind::Research, TaskKind::Code]
        );
    }

    #[test]
    fn dependencies_follow_sequence_words_and_shared_subjects() {
        let tasks = decompose(
            "Write the release notes and review the budget, then publish the release notes",
        );
        assert_eq!(tasks.len(), 3);
        assert_eq!(tasks[0].depends_on, Vec::<usize>::new());
        assert_eq!(tasks[1].depends_on, Vec::<usize>::new());
        // Shares "release"/"notes" with task 0 and is introduced by "then" after task 1.
        assert_eq!(tasks[2].depends_on, [0, 1]);
    }

    #[test]
    fn fingerprints_are_stable_and_distinct() {
        let a = decompose("Write a poem. Write a song");
        assert_eq!(a[0].fingerprint.len(), 16);
        assert_ne!(a[0].fingerprint, a[1].fingerprint);
        assert_eq!(a[0].fingerprint, decompose("Write a poem")[0].fingerprint);
    }

    #[test]
    fn goals_without_words_have_no_tasks() {
        assert!(decompose("").is_empty());
        assert!(decompose(" ... ; then, and ").is_empty());
    }
}
