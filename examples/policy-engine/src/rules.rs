//! The rule set: evaluated in order, the first rule that denies decides; otherwise `default`
//! allows. Rule names are a fixed set, so they can be metric labels.

use serde::{Deserialize, Serialize};

/// What the caller wants to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub(crate) enum Action {
    /// The gateway, before handing a goal to the orchestrator.
    #[serde(rename = "workflow.create")]
    WorkflowCreate,
    /// The orchestrator, before running one task of a workflow on its own.
    #[serde(rename = "task.run")]
    TaskRun,
    /// The gateway, before running a marketplace capsule.
    #[serde(rename = "capsule.execute")]
    CapsuleExecute,
    /// The gateway, before a free-form generation.
    #[serde(rename = "generate")]
    Generate,
}

/// One question to the policy engine.
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct PolicyRequest {
    /// Who asks (the token's subject).
    pub(crate) subject: String,
    pub(crate) action: Action,
    /// What the action applies to, e.g. a capsule id.
    #[serde(default)]
    pub(crate) resource: Option<String>,
    /// The text the action carries: a goal, a task, a prompt or a capsule input.
    #[serde(default)]
    pub(crate) input: String,
}

/// The answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Decision {
    pub(crate) allowed: bool,
    /// The rule that decided: `input_size`, `blocked_words`, `capsule_denylist`,
    /// `requires_approval` or `default`.
    pub(crate) rule: &'static str,
    pub(crate) reason: String,
}

impl Decision {
    fn deny(rule: &'static str, reason: String) -> Self {
        Self {
            allowed: false,
            rule,
            reason,
        }
    }
}

/// The longest input accepted, in characters.
pub(crate) const MAX_INPUT_CHARS: usize = 4_000;
/// Words no input may contain.
const BLOCKED_WORDS: &[&str] = &[
    "malware",
    "ransomware",
    "phishing",
    "keylogger",
    "botnet",
    "ddos",
    "exploit",
];
/// Capsules listed in the marketplace but not allowed to run.
const CAPSULE_DENYLIST: &[&str] = &["crypto-miner"];
/// Verbs an autonomous task may not perform without a human's approval.
const APPROVAL_VERBS: &[&str] = &["delete", "deploy", "drop", "transfer", "wipe"];

/// Evaluates `request` against the rules, in order.
pub(crate) fn evaluate(request: &PolicyRequest) -> Decision {
    let chars = request.input.chars().count();
    if chars > MAX_INPUT_CHARS {
        return Decision::deny(
            "input_size",
            format!("the input has {chars} characters; the limit is {MAX_INPUT_CHARS}"),
        );
    }
    let words: Vec<String> = request
        .input
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect();
    if let Some(word) = BLOCKED_WORDS
        .iter()
        .find(|blocked| words.iter().any(|w| w == *blocked))
    {
        return Decision::deny(
            "blocked_words",
            format!("the input contains the blocked word {word:?}"),
        );
    }
    if request.action == Action::CapsuleExecute {
        if let Some(capsule) = request
            .resource
            .as_deref()
            .filter(|id| CAPSULE_DENYLIST.contains(id))
        {
            return Decision::deny(
                "capsule_denylist",
                format!("capsule {capsule:?} is on the denylist"),
            );
        }
    }
    if request.action == Action::TaskRun {
        if let Some(verb) = APPROVAL_VERBS
            .iter()
            .find(|verb| words.iter().any(|w| w == *verb))
        {
            return Decision::deny(
                "requires_approval",
                format!("tasks that {verb} need a human's approval"),
            );
        }
    }
    Decision {
        allowed: true,
        rule: "default",
        reason: "no rule denies it".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(action: Action, resource: Option<&str>, input: &str) -> PolicyRequest {
        PolicyRequest {
            subject: "demo".to_owned(),
            action,
            resource: resource.map(ToOwned::to_owned),
            input: input.to_owned(),
        }
    }

    #[test]
    fn harmless_requests_are_allowed_by_default() {
        let decision = evaluate(&request(
            Action::Generate,
            None,
            "Write a haiku about rivers",
        ));
        assert!(decision.allowed);
        assert_eq!(decision.rule, "default");
    }

    #[test]
    fn each_rule_denies_what_it_covers() {
        let cases = [
            (
                request(Action::Generate, None, &"a".repeat(4_001)),
                "input_size",
            ),
            (
                request(
                    Action::WorkflowCreate,
                    None,
                    "Write some Malware, then test it",
                ),
                "blocked_words",
            ),
            (
                request(Action::CapsuleExecute, Some("crypto-miner"), "go"),
                "capsule_denylist",
            ),
            (
                request(Action::TaskRun, None, "deploy the release to production"),
                "requires_approval",
            ),
        ];
        for (request, rule) in cases {
            let decision = evaluate(&request);
            assert!(!decision.allowed, "{rule}");
            assert_eq!(decision.rule, rule);
        }
    }

    #[test]
    fn rules_match_whole_words_and_their_action_only() {
        // "exploits" is not the word "exploit"; deploying is fine to *plan*, not to run.
        assert!(evaluate(&request(Action::Generate, None, "exploits of a hero")).allowed);
        assert!(evaluate(&request(Action::WorkflowCreate, None, "deploy the site")).allowed);
        assert!(
            evaluate(&request(
                Action::CapsuleExecute,
                Some("summarize-text"),
                "hi"
            ))
            .allowed
        );
    }
}
